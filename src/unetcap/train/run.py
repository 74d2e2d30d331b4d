"""One training run, from the prepared store and a split manifest to metrics.json,
history.csv and segmentations.npz."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

from unetcap import UnetcapError
from unetcap.common import atomic_path
from unetcap.metrics import SCHEMA, write_history, write_metrics
from unetcap.provenance import device, host, versions
from unetcap.scoring import Score
from unetcap.segmentations import write_run_segmentations
from unetcap.study import BACKBONES
from unetcap.train.checkpoint import CHECKPOINT_DIR, read_checkpoint
from unetcap.train.data import load_run_data, segmentation_rows
from unetcap.train.faults import FaultHook, faults, raise_injected_failure
from unetcap.train.loop import Loop, fit, new_state, score, score_holdout
from unetcap.train.network import VERSIONS, build_network
from unetcap.train.settings import Settings, run_seed

log = logging.getLogger(__name__)


def train_run(
    images,
    masks,
    store,
    manifest,
    metrics,
    history,
    segmentations=None,
    *,
    size: int,
    backbone: str,
    lr: float,
    reg: float,
    fold: int,
    seed: int,
    config_sha256: str = "",
    **settings,
) -> dict:
    """Train one run and write its `metrics` (metrics.json), `history` (history.csv, one
    row per epoch) and `segmentations` (segmentations.npz, if given), each atomically, and
    return the metrics. `settings` are config `train`'s training settings (`Settings`).

    Inputs are the prepared store (`images`, `masks`, `store` = images.npy, masks.npy,
    store.json) and the size's split manifest; `fold` is validated on. Bad inputs raise
    UnetcapError before any training and leave nothing behind.

    Divergence: when a batch's loss or an epoch's validation loss is NaN or infinite, the
    run stops and is written with status "diverged" and the metrics of its best weights so
    far, or of its initial weights when it diverges in its first epoch (best_epoch 0). Its
    history then ends with the diverged epoch (loss non-finite, validation empty).
    `epochs` is the number of epochs run, the diverged one included.

    The folder's checkpoint/ is resumed when it was made by the same run with the same
    settings and data, and removed at the end. With `save_model`, the trained model (best
    weights) is also written as model.keras in the run folder (not a declared output).
    Faults for tests come from the environment (`unetcap.train.faults`).
    """
    s = Settings.from_config(**settings)
    if backbone not in BACKBONES:
        raise UnetcapError(f"backbone {backbone!r} is not one of {list(BACKBONES)}")
    metrics, history = Path(metrics), Path(history)
    run_dir = metrics.parent
    injected = faults()
    raise_injected_failure(injected, run_dir)
    data = load_run_data(images, masks, store, manifest, size, fold)
    rseed = run_seed(seed, size, backbone, lr, reg, fold)
    run = _run_fields(size, backbone, lr, reg, fold, rseed, seed, data.repeat)
    log.info("run %s: %s images, seed %d", run_dir, data.counts(), rseed)
    trainer = Trainer(run, data, s, run_dir, hooks=(FaultHook.for_run(injected, run_dir),))
    trainer.build()
    trainer.resume()
    trainer.fit()
    trainer.score()
    result = trainer.record(config_sha256)
    trainer.save(metrics, history, segmentations)
    return result


class Trainer:
    """One training run, its steps named in the order they happen: `build` (TensorFlow,
    the U-Net, its optimizer and functions), `resume` (from the run's checkpoint when it has
    a matching one), `fit` (epochs, validation, early stopping; `hooks` act at each epoch's
    start and end: `loop.Hook`), `score` (the best weights on the validation fold, the test
    set and the holdout pool), `record` (metrics.json's content) and `save` (the files,
    metrics.json last). Each step leaves what the next needs on the trainer."""

    def __init__(self, run: dict, data, settings: Settings, run_dir: Path, hooks: tuple = ()):
        self.run, self.data, self.settings, self.run_dir, self.hooks = run, data, settings, Path(run_dir), hooks
        self.checkpoint = self.run_dir / CHECKPOINT_DIR
        self.started = time.perf_counter()
        self.seconds: dict = {}

    def build(self) -> None:
        run, s = self.run, self.settings
        self.net = build_network(run["backbone"], self.data.image_size, run["lr"], run["reg"], run["seed"], s)
        self.seconds.update(self.net.seconds)
        self.initial = self.net.get_weights()
        setup = self.net.setup
        log.info(
            "%s on %s, %d threads, op determinism %s, grappler %s (train) %s (predict), "
            "precision %s, XLA %s, GPU memory growth %s, limit %s MB",
            s.backend,
            device(),
            s.threads,
            *("on" if setup[k] else "off" for k in ("deterministic", "grappler_train", "grappler_predict")),
            s.precision,
            "on" if s.jit else "off",
            "on" if setup["memory_growth"] else "off",
            setup["memory_limit_mb"],
        )

    def resume(self) -> None:
        key = _resume_key(self.run, self.settings, self.data)
        self.state, self.best_weights = _resume(self.net, self.checkpoint, key, self.run["lr"])

    def fit(self) -> None:
        loop = Loop(self.net, self.data, self.settings, self.run["seed"], self.checkpoint, hooks=self.hooks)
        self.status, self.detail, self.best_weights, first_step = fit(loop, self.state, self.best_weights, self.started)
        self.seconds["train"] = self.state["seconds_train"]
        self.seconds["first_step"] = first_step if first_step is not None else math.nan

    def score(self) -> None:
        """Restore the best weights (the initial ones when no epoch completed) and score them."""
        predict, data, batch = self.net.predict, self.data, self.settings.batch_size
        self.net.set_weights(self.best_weights if self.state["best_epoch"] else self.initial)
        t = time.perf_counter()
        self.scores = {
            "val": score(predict, data.x_val, data.y_val, batch),
            "test": score(predict, data.x_test, data.y_test, batch),
        }
        self.seconds["eval"] = time.perf_counter() - t
        t = time.perf_counter()
        self.scores["holdout"] = score_holdout(predict, data, batch)
        self.seconds["holdout"] = time.perf_counter() - t
        val, test = self.scores["val"], self.scores["test"]
        log.info(
            "done: %s after %d epochs (best %d): val dice %.4f bce %.4g, test dice %.4f bce %.4g, "
            "holdout dice %.4f (%d patients, %.1f s)",
            self.status,
            self.state["epoch"],
            self.state["best_epoch"],
            val.dice,
            val.bce,
            test.dice,
            test.bce,
            holdout_record(self.scores["holdout"])["dice"],
            len(self.scores["holdout"]),
            self.seconds["holdout"],
        )

    def record(self, config_sha256: str = "") -> dict:
        """The run's metrics.json (docs/contracts.md)."""
        state, s, scores, setup = self.state, self.settings, self.scores, self.net.setup
        val, test = scores["val"], scores["test"]
        order = ("train", "eval", "import", "build", "first_step", "holdout")
        self.result = {
            "schema": SCHEMA,
            "run": self.run,
            "status": self.status,
            "epochs": state["epoch"],
            "best_epoch": state["best_epoch"],
            "params": self.net.count_params(),
            "n_images": self.data.counts(),
            "val": {"bce": val.bce, "dice": val.dice},
            "test": {"bce": test.bce, "dice": test.dice},
            "holdout": holdout_record(scores["holdout"]),
            "seconds": {key: self.seconds[key] for key in order},
            "provenance": {
                "data_sha256": self.data.data_sha256,
                "config_sha256": str(config_sha256),
                "versions": versions(*VERSIONS[s.backend]),
                "device": device(),
                "host": host(),
            },
            "train": {
                **s.resume_key(),
                "threads": s.threads,
                "deterministic": setup["deterministic"],
                "grappler_train": setup["grappler_train"],
                "grappler_predict": setup["grappler_predict"],
                "memory_growth": setup["memory_growth"],
                "memory_limit_mb": setup["memory_limit_mb"],
                "steps": int(sum(row.get("steps", 0) for row in state["rows"])),
                "resumed": state["resumed"],
                "stopped": self.detail,
            },
            "data": {"image_size": self.data.image_size, **self.data.preparation},
        }
        return self.result

    def save(self, metrics, history, segmentations=None) -> None:
        """The run's files: the model (with `save_model`: model.keras, or model.pt for
        pytorch), segmentations.npz, history.csv, then metrics.json last (its presence marks a
        finished run); the checkpoint is removed."""
        s, run = self.settings, self.run
        if s.save_model:
            with atomic_path(self.run_dir / self.net.model_file) as tmp:
                self.net.save(tmp)
        if segmentations is not None:
            _keep_segmentations(
                segmentations, self.net.predict, self.data, s.keep_segmentations, run["config_seed"], run["size"]
            )
        write_history(self.state["rows"], history)
        shutil.rmtree(self.checkpoint, ignore_errors=True)
        write_metrics(self.result, metrics)


def _run_fields(size, backbone, lr, reg, fold, rseed, seed, repeat) -> dict:
    """metrics.json's `run`: the grid cell, the backbone's family and depth, the seeds, and
    the draw of development patients (`repeat`) the fold belongs to."""
    return {
        "size": size,
        "backbone": backbone,
        "family": BACKBONES[backbone].family,
        "depth": BACKBONES[backbone].depth,
        "lr": float(lr),
        "reg": float(reg),
        "fold": fold,
        "repeat": repeat,
        "seed": rseed,
        "config_seed": seed,
    }


def _resume_key(run: dict, s: Settings, data) -> str:
    """What a checkpoint must have been made with to be resumed: the run, its settings
    (those that change the weights) and its data."""
    key = {"run": run, "settings": s.resume_key(), "data": data.data_sha256, "counts": data.counts()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _resume(net, folder: Path, key: str, lr: float):
    """(loop state, best weights so far): from the run's checkpoint when it has one made
    with `key` (the network's model and optimizer then hold its weights), else a new state
    and None (no best epoch yet)."""
    restored = read_checkpoint(folder, key)
    if not restored:
        return new_state(key, lr), None
    state, weights, best, optimizer_weights = restored
    net.set_weights(weights)
    net.set_optimizer_weights(optimizer_weights)
    state["resumed"] += 1
    log.info("resumed from %s after epoch %d (best epoch %d)", folder, state["epoch"], state["best_epoch"])
    return state, best if best is not None else weights


def holdout_record(patients: list) -> dict:
    """metrics.json's `holdout`: DICE and BCE of the whole holdout pool (every sampled image
    of every holdout patient, pooled as one set) and each patient's counts, from which any
    resample of the patients gives its DICE and BCE again."""
    total = Score()
    for _, one in patients:
        total.intersection += one.intersection
        total.total += one.total
        total.pixels += one.pixels
        total.bce_total += one.bce_total
    return {
        "bce": total.bce,
        "dice": total.dice,
        "patients": [
            {
                "patient": patient,
                "pixels": one.pixels,
                "intersection": one.intersection,
                "total": one.total,
                "bce_sum": one.bce_total,
            }
            for patient, one in patients
        ],
    }


def _keep_segmentations(path, predict, data, count: int, seed: int, size: int) -> None:
    """segmentations.npz: the restored model's segmentations of the size's kept test images."""
    import numpy as np

    rows = segmentation_rows(data.test_rows, count, seed, size)
    position = {int(row): i for i, row in enumerate(data.test_rows)}
    where = np.array([position[int(row)] for row in rows], np.int64)
    x, y = data.x_test[where], data.y_test[where]
    probability = predict(x) if len(rows) else np.zeros((0, *x.shape[1:]), np.float32)
    write_run_segmentations(path, rows, y[..., 0], probability[..., 0])
