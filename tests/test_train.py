"""Training runs with real (tiny) models: the L2 penalty, metrics.json and history.csv,
determinism, resume after a hard kill, divergence, bad inputs."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiny_store import TF_THREADS as THREADS
from tiny_store import write_tiny_store

from unetcap import UnetcapError, train
from unetcap.metrics import HISTORY_COLUMNS, read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def pinned_tensorflow():
    train.configure_tensorflow(THREADS)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """8 train, 8 val (fold 0) and 8 test images of 32 x 32."""
    return write_tiny_store(tmp_path_factory.mktemp("store"), image_size=32, per_patient=4)


def run_args(store, run_dir, **settings):
    args = {
        "images": str(store["images"]),
        "masks": str(store["masks"]),
        "store": str(store["store"]),
        "manifest": str(store["manifest"]),
        "metrics": str(Path(run_dir) / "metrics.json"),
        "history": str(Path(run_dir) / "history.csv"),
        "size": store["size"],
        "backbone": "efficientnetb0",
        "lr": 1e-3,
        "reg": 1e-4,
        "fold": 0,
        "seed": 7,
        "max_epochs": 4,
        "patience": 10,
        "batch_size": 4,
        "threads": THREADS,
        "checkpoint_every": 0,
        "config_sha256": "test",
    }
    args.update(settings)
    return args


def run_in_subprocess(args, fault=None):
    env = dict(os.environ)
    env.pop(train.FAULT_ENV, None)
    if fault:
        env[train.FAULT_ENV] = fault
    code = "import json, sys; from unetcap.train import train_run; train_run(**json.loads(sys.argv[1]))"
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], env=env, capture_output=True, text=True, timeout=300
    )


def comparable(metrics: dict) -> dict:
    """metrics.json without what may differ between identical runs (times, resume count)."""
    out = {k: v for k, v in metrics.items() if k not in ("seconds", "train")}
    return json.loads(json.dumps(out))


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):
    """An uninterrupted efficientnetb0 run (it has dropout), 4 epochs, in this process."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    return train.train_run(**run_args(store, run_dir)), run_dir


# ---------------------------------------------------------------- seeds and the penalty
def test_run_seed_depends_on_every_wildcard():
    base = dict(seed=123, size=1000, backbone="resnet18", lr=1e-3, reg=1e-6, fold=2)
    seeds = {train.run_seed(**base)}
    for key, other in [("seed", 124), ("size", 500), ("backbone", "vgg16"), ("lr", 1e-2), ("reg", 1e-4), ("fold", 3)]:
        seeds.add(train.run_seed(**dict(base, **{key: other})))
    assert len(seeds) == 7
    assert train.run_seed(**base) == train.run_seed(**base) < 2**31


def test_l2_penalty_covers_every_kernel_including_depthwise_and_is_in_the_loss():
    import tensorflow as tf

    reg = 1e-2
    model = train.build_model("efficientnetb0", 32, reg, seed=3)
    kernels = [w for w in model.trainable_weights if w.name.split("/")[-1].startswith(("kernel", "depthwise_kernel"))]
    depthwise = [w for w in kernels if "depthwise_kernel" in w.name]
    assert len(depthwise) == 16 and len(kernels) == 92
    assert len(model.losses) == len(kernels)
    expected = reg * sum(float(np.sum(np.square(w.numpy(), dtype=np.float64))) for w in kernels)
    assert train.penalty(model) == pytest.approx(expected, rel=1e-5)
    assert {
        layer.get_config().get("depthwise_regularizer") is not None
        for layer in model.layers
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D)
    } == {True}

    # the loss the train step minimises: same weights and batch, with and without the penalty
    plain = train.build_model("efficientnetb0", 32, 0.0, seed=3)
    assert plain.losses == []
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), plain.get_weights()))
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32, 1), dtype=np.float32)
    y = (rng.random((2, 32, 32, 1)) > 0.5).astype(np.float32)
    losses = []
    for m in (model, plain):
        train.seed_dropout(m, 5, 1)
        step, _ = train.make_functions(m, train.make_optimizer("adam", 1e-3, m), 32)
        losses.append(float(step(x, y)))
    assert losses[0] - losses[1] == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- a run and its files
@pytest.mark.slow
def test_run_writes_valid_metrics_and_history_and_no_checkpoint(reference):
    metrics, run_dir = reference
    assert read_metrics(run_dir / "metrics.json") == json.loads(json.dumps(metrics))
    assert metrics["status"] == "ok" and metrics["epochs"] == 4
    assert metrics["run"]["family"] == "EfficientNet" and metrics["run"]["depth"] == "short"
    assert metrics["n_images"] == {"train": 8, "val": 8, "test": 8, "holdout": 8}
    # the test set is the whole holdout pool here: the pooled holdout scores are the test set's,
    # and its patients' counts add up to them
    assert metrics["holdout"]["dice"] == metrics["test"]["dice"]
    assert metrics["holdout"]["bce"] == pytest.approx(metrics["test"]["bce"], rel=1e-12)
    patients = metrics["holdout"]["patients"]
    assert [p["patient"] for p in patients] == ["P04", "P05"] and all(p["pixels"] == 4 * 32 * 32 for p in patients)
    assert 2 * sum(p["intersection"] for p in patients) / sum(p["total"] for p in patients) == metrics["test"]["dice"]
    assert metrics["params"] == 10114925
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert (history["lr"] == 1e-3).all()
    # the restored weights are those of the best epoch: its validation numbers come back
    best = history.set_index("epoch").loc[metrics["best_epoch"]]
    assert best["val_loss"] == history["val_loss"].min()
    assert metrics["val"]["dice"] == pytest.approx(best["val_dice"], abs=1e-12)
    assert metrics["val"]["bce"] == pytest.approx(best["val_bce"], abs=1e-12)
    assert sorted(p.name for p in run_dir.iterdir()) == ["history.csv", "metrics.json"]


@pytest.mark.slow
def test_same_run_twice_gives_identical_metrics(store, reference, tmp_path):
    again = train.train_run(**run_args(store, tmp_path / "run"))
    assert comparable(again) == comparable(reference[0])
    assert (tmp_path / "run" / "history.csv").read_text().split("\n")[1].split(",")[:5] == (
        reference[1] / "history.csv"
    ).read_text().split("\n")[1].split(",")[:5]


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint_and_ends_as_if_uninterrupted(store, reference, tmp_path):
    run_dir = tmp_path / "run"
    args = run_args(store, run_dir)
    killed = run_in_subprocess(args, fault="exit_after_epoch:2")
    assert killed.returncode == train.FAULT_EXIT_CODE, killed.stderr[-2000:]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint"]
    assert [p.name for p in (run_dir / "checkpoint").iterdir()] == [train.CHECKPOINT_FILE]

    resumed = train.train_run(**args)
    assert resumed["train"]["resumed"] == 1
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert comparable(resumed) == comparable(reference[0])
    ref_history = pd.read_csv(reference[1] / "history.csv")
    pd.testing.assert_frame_equal(history.drop(columns="seconds"), ref_history.drop(columns="seconds"))
    assert not (run_dir / "checkpoint").exists()


@pytest.mark.slow
def test_checkpoint_of_other_settings_is_not_resumed(store, tmp_path):
    run_dir = tmp_path / "run"
    killed = run_in_subprocess(run_args(store, run_dir, backbone="resnet18", max_epochs=2), fault="exit_after_epoch:1")
    assert killed.returncode == train.FAULT_EXIT_CODE, killed.stderr[-2000:]
    metrics = train.train_run(**run_args(store, run_dir, backbone="resnet18", max_epochs=2, batch_size=8))
    assert metrics["train"]["resumed"] == 0 and metrics["epochs"] == 2


# ---------------------------------------------------------------- divergence
@pytest.mark.slow
def test_divergence_in_the_first_epoch_keeps_the_initial_weights(store, tmp_path):
    args = run_args(store, tmp_path / "run", backbone="resnet18", lr=1e30, reg=1e-2)
    metrics = train.train_run(**args)
    assert metrics["status"] == "diverged"
    assert (metrics["epochs"], metrics["best_epoch"]) == (1, 0)
    assert read_metrics(tmp_path / "run" / "metrics.json")["status"] == "diverged"
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [1] and not math.isfinite(history["loss"][0])
    # the metrics are those of the initial weights
    data = train.load_run_data(args["images"], args["masks"], args["store"], args["manifest"], args["size"], 0)
    model = train.build_model("resnet18", 32, 1e-2, metrics["run"]["seed"])
    setup = train.configure_tensorflow(THREADS)
    _, predict = train.make_functions(model, train.make_optimizer("adam", 1e-3, model), 32, setup["grappler_predict"])
    val = train.score(predict, data.x_val, data.y_val, 4)
    assert (metrics["val"]["dice"], metrics["val"]["bce"]) == (val.dice, val.bce)
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.mark.slow
def test_divergence_later_keeps_the_best_weights_so_far(store, tmp_path, monkeypatch):
    monkeypatch.setenv(train.FAULT_ENV, "diverge_at_epoch:3")
    metrics = train.train_run(**run_args(store, tmp_path / "run", backbone="resnet18", save_model=True))
    assert metrics["status"] == "diverged" and metrics["epochs"] == 3
    history = pd.read_csv(tmp_path / "run" / "history.csv").set_index("epoch")
    assert metrics["best_epoch"] == history["val_loss"].idxmin() in (1, 2)
    assert metrics["val"]["dice"] == pytest.approx(history.loc[metrics["best_epoch"], "val_dice"], abs=1e-12)
    # save_model keeps the restored (best) model beside the metrics
    import tensorflow as tf

    saved = tf.keras.models.load_model(tmp_path / "run" / "model.keras", compile=False)
    assert saved.count_params() == metrics["params"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["history.csv", "metrics.json", "model.keras"]


# ---------------------------------------------------------------- bad inputs, faults
def test_bad_inputs_are_refused_before_training_naming_the_file(store, tmp_path):
    args = run_args(store, tmp_path / "run")
    with pytest.raises(UnetcapError, match=f"{args['manifest']}: manifest of size {store['size']}"):
        train.train_run(**dict(args, size=store["size"] + 1))
    images = np.load(args["images"])
    images[5, 3, 3] = np.nan  # row 5: patient P01, fold 1, a train image of fold 0
    bad = tmp_path / "images.npy"
    np.save(bad, images)
    with pytest.raises(UnetcapError, match=rf"{bad}: rows \[5\] are not finite values in \[0, 1\]"):
        train.train_run(**dict(args, images=str(bad)))
    with pytest.raises(UnetcapError, match="train.optimizer: 'adamw' is not one of"):
        train.train_run(**dict(args, optimizer="adamw"))
    assert not (tmp_path / "run").exists()


def test_injected_failure_hits_only_the_chosen_runs(store, tmp_path, monkeypatch):
    monkeypatch.setenv(train.FAULT_ENV, "fail:lr0.001_reg0.0001/fold1")
    assert train.faults() == {"fail": ["lr0.001_reg0.0001/fold1"]}
    chosen = tmp_path / "size24/resnet18/lr0.001_reg0.0001/fold1"
    with pytest.raises(RuntimeError, match="injected failure"):
        train.train_run(**run_args(store, chosen, fold=1))
    monkeypatch.setenv(train.FAULT_ENV, "exit_after_epoch:2:fold1, diverge_at_epoch:3")
    found = train.faults()
    assert train.fault_epochs(found, "exit_after_epoch", chosen) == {2}
    assert train.fault_epochs(found, "exit_after_epoch", tmp_path / "fold0") == set()
    assert train.fault_epochs(found, "diverge_at_epoch", tmp_path / "fold0") == {3}
    for bad in ("explode", "exit_after_epoch:two"):
        monkeypatch.setenv(train.FAULT_ENV, bad)
        with pytest.raises(UnetcapError, match=f"cannot read '{bad}'"):
            train.faults()


# ---------------------------------------------------------------- remedies for small subsets
def test_settings_take_their_defaults_and_bounds_from_the_schema(tmp_path, monkeypatch):
    """One source for the training settings: Settings reads the schema's defaults and
    bounds (a changed schema changes them, nothing restates them), every training setting
    is in the schema (the other `train` keys are job resources), and the defaults are the
    paper's protocol."""
    import yaml

    from unetcap import schema

    defaults = train.Settings.from_config()
    assert (defaults.loss, defaults.steps_per_epoch, defaults.augment.active) == ("bce", 0, False)
    assert (defaults.max_epochs, defaults.patience, defaults.batchnorm_momentum) == (50, 5, 0.99)
    properties = schema.section("train")["properties"]
    assert set(properties) - set(train.Settings.names()) == {"mem_mb", "runtime", "gpus"}
    with pytest.raises(UnetcapError, match=r"train.augment.rotate: 400 .*train.loss: 'dice'"):
        train.Settings.from_config(loss="dice", augment={"rotate": 400})
    with pytest.raises(UnetcapError, match=r"train.augment: .*'shear'"):
        train.Settings.from_config(augment={"shear": 1})
    with pytest.raises(UnetcapError, match=r"unknown training settings \['train.epochs'\]"):
        train.Settings.from_config(epochs=3)
    # the same library under another schema: other defaults and bounds
    changed = yaml.safe_load(schema.SCHEMA_PATH.read_text())
    changed["properties"]["train"]["properties"]["max_epochs"].update(default=7, maximum=9)
    (tmp_path / "config.schema.yaml").write_text(yaml.safe_dump(changed))
    monkeypatch.setattr(schema, "SCHEMA_PATH", tmp_path / "config.schema.yaml")
    schema._schema.cache_clear()
    try:
        assert train.Settings.from_config().max_epochs == 7
        with pytest.raises(UnetcapError, match=r"train.max_epochs: 10 is greater than the maximum of 9"):
            train.Settings.from_config(max_epochs=10)
    finally:
        schema._schema.cache_clear()


def test_bce_dice_loss_adds_the_soft_dice_of_the_batch():
    rng = np.random.default_rng(2)
    x = rng.random((4, 32, 32, 1), dtype=np.float32)
    y = (rng.random((4, 32, 32, 1)) > 0.8).astype(np.float32)
    losses, p = [], None
    for loss in ("bce", "bce+dice"):
        model = train.build_model("resnet18", 32, 0.0, seed=3)
        if p is None:  # the batch's predictions in training mode, before the step's update
            p = model(x, training=True).numpy().astype(np.float64)
            model = train.build_model("resnet18", 32, 0.0, seed=3)
        step, _ = train.make_functions(model, train.make_optimizer("adam", 1e-3, model), 32, loss=loss)
        losses.append(float(step(x, y)))
    soft_dice = 1 - (2 * np.sum(y * p) + 1) / (np.sum(y) + np.sum(p) + 1)
    assert 0.5 < soft_dice < 1
    assert losses[1] - losses[0] == pytest.approx(soft_dice, rel=1e-4)


def test_epoch_batches_one_pass_or_a_fixed_number_drawn_with_replacement():
    one_pass = train.epoch_batches(10, 4, 0, np.random.default_rng(1))
    assert [len(b) for b in one_pass] == [4, 4, 2]
    assert sorted(np.concatenate(one_pass).tolist()) == list(range(10))
    drawn = train.epoch_batches(10, 4, 25, np.random.default_rng(1))
    assert len(drawn) == 25 and all(len(b) == 4 and b.min() >= 0 and b.max() < 10 for b in drawn)
    assert len({int(i) for b in drawn for i in b}) == 10  # 100 draws of 10 images: all of them, repeated
    again = train.epoch_batches(10, 4, 25, np.random.default_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(drawn, again))


def test_augmentation_moves_image_and_mask_together_and_stays_in_range():
    size = 32
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - 10) ** 2 + (xx - 20) ** 2 < 25).astype(np.uint8)  # a disc off the centre
    x = np.repeat((0.2 + 0.7 * mask).astype(np.float32)[None, ..., None], 16, axis=0)
    y = np.repeat(mask[None, ..., None], 16, axis=0)
    augment = train.Augment(flip=True, rotate=30.0, intensity=0.2)
    ax, ay = train.augment_batch(x, y, augment, np.random.default_rng(5))
    assert ax.shape == x.shape and ay.dtype == y.dtype and set(np.unique(ay)) <= {0, 1}
    assert ax.min() >= 0 and ax.max() <= 1 and not np.array_equal(ax, x)
    assert np.array_equal(x[0, ..., 0], (0.2 + 0.7 * mask).astype(np.float32))  # the input is untouched
    moved = 0
    for image, m in zip(ax[..., 0], ay[..., 0]):
        bright = image > np.median(image[m == 0]) + 0.1  # the disc, wherever it went
        assert (bright & (m == 1)).sum() >= 0.8 * m.sum()
        moved += not np.array_equal(m, mask)
    assert moved >= 12  # flips and turns move the disc in (nearly) every image
    again = train.augment_batch(x, y, augment, np.random.default_rng(5))
    assert np.array_equal(again[0], ax) and np.array_equal(again[1], ay)


@pytest.mark.slow
def test_remedies_are_recorded_and_a_fixed_epoch_length_gives_that_many_steps(store, tmp_path):
    args = run_args(
        store,
        tmp_path / "run",
        backbone="resnet18",
        max_epochs=3,
        steps_per_epoch=5,
        loss="bce+dice",
        augment={"flip": True, "rotate": 10, "intensity": 0.1},
    )
    metrics = train.train_run(**args, segmentations=str(tmp_path / "run" / "segmentations.npz"))
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["steps"].tolist() == [5, 5, 5] and metrics["train"]["steps"] == 15
    assert metrics["train"]["loss"] == "bce+dice" and metrics["train"]["steps_per_epoch"] == 5
    assert metrics["train"]["augment"] == {"flip": True, "rotate": 10.0, "intensity": 0.1}
    assert metrics["data"] == {"image_size": 32, "roi_method": "none", "roi_fraction": 1.0}


@pytest.mark.slow
def test_paper_epoch_is_one_pass(reference):
    metrics, run_dir = reference  # 8 training images, batch 4, 4 epochs
    assert pd.read_csv(run_dir / "history.csv")["steps"].tolist() == [2, 2, 2, 2]
    assert metrics["train"]["steps"] == 8 and metrics["train"]["steps_per_epoch"] == 0


@pytest.mark.slow
def test_runs_keep_segmentations_of_the_same_test_images(store, reference, tmp_path):
    from unetcap.scoring import dice
    from unetcap.segmentations import read_run_segmentations

    paths = []
    for fold, backbone in ((0, "resnet18"), (1, "vgg16")):
        path = tmp_path / f"run{fold}" / "segmentations.npz"
        train.train_run(
            **run_args(store, path.parent, backbone=backbone, fold=fold, max_epochs=1, keep_segmentations=3),
            segmentations=str(path),
        )
        paths.append(path)
    kept = [read_run_segmentations(p) for p in paths]
    assert np.array_equal(kept[0]["rows"], kept[1]["rows"]) and len(kept[0]["rows"]) == 3
    test_rows = train.load_run_data(
        store["images"], store["masks"], store["store"], store["manifest"], store["size"], 0
    ).test_rows
    assert set(kept[0]["rows"]) <= set(test_rows.tolist())
    masks = np.load(store["masks"])
    for k in kept:
        assert k["predicted"].shape == (3, 32, 32) and k["predicted"].dtype == bool
        for row, predicted, value in zip(k["rows"], k["predicted"], k["dice"]):
            assert value == dice(masks[row], predicted.astype(np.float32))


def frozen_loop(tmp_path, settings, hooks=()):
    """The epoch loop around a network (the interface every backend's has) with no weights
    whose validation loss never improves after epoch 1: only the loop's bookkeeping (and
    its hooks) run."""
    from unetcap.train.data import RunData
    from unetcap.train.loop import Loop

    class Frozen:
        def train_step(self, x, y):
            return 0.5

        def predict(self, x):
            return np.full(x.shape, 0.2, np.float32)

        def penalty(self):
            return 0.0

        def get_weights(self):
            return []

        def optimizer_weights(self):
            return []

        def set_lr(self, value):
            self.lr = value

        def seed_dropout(self, seed, epoch):
            pass

    x = np.zeros((4, 32, 32, 1), np.float32)
    y = np.zeros((4, 32, 32, 1), np.uint8)
    data = RunData(x, y, x, y, x, y, np.arange(4), 32, "sha", {})
    return Loop(Frozen(), data, settings, seed=1, checkpoint=tmp_path / "checkpoint", hooks=hooks)


@pytest.mark.parametrize("min_epochs, epochs", [(0, 2), (4, 4)])
def test_min_epochs_keeps_early_stopping_from_stopping_a_run_before_it(tmp_path, min_epochs, epochs):
    """Patience 1 stops the frozen loop after epoch 2, unless min_epochs holds it longer;
    either way it says it stopped early, and keeps epoch 1's weights."""
    from unetcap.train.loop import fit, new_state

    settings = train.Settings.from_config(max_epochs=6, patience=1, min_epochs=min_epochs, batch_size=4)
    state = new_state("key", 1e-3)
    status, detail, _, _ = fit(frozen_loop(tmp_path, settings), state, None, 0.0)
    assert (status, detail, state["epoch"], state["best_epoch"]) == ("ok", "early stopping", epochs, 1)


def test_hooks_run_at_each_epochs_start_and_end_and_may_ask_for_a_checkpoint(tmp_path):
    """The trainer's hooks (fault injection is one): called in epoch order, start before the
    epoch's batches and end after its row is recorded; a hook that wants a checkpoint after
    epoch 2 gets it (checkpoint_every is far away), and that checkpoint resumes at epoch 2."""
    from unetcap.train.checkpoint import read_checkpoint
    from unetcap.train.loop import Hook, fit, new_state

    class Recorder(Hook):
        def __init__(self):
            self.calls = []

        def on_epoch_start(self, loop, epoch):
            self.calls.append(("start", epoch, len(state["rows"])))

        def wants_checkpoint(self, epoch):
            return epoch == 2

        def on_epoch_end(self, loop, epoch, row):
            self.calls.append(("end", epoch, row["epoch"]))

    settings = train.Settings.from_config(max_epochs=3, patience=5, batch_size=4, checkpoint_every=1e9)
    recorder = Recorder()
    state = new_state("key", 1e-3)
    fit(frozen_loop(tmp_path, settings, hooks=(recorder,)), state, None, 0.0)
    assert recorder.calls == [
        ("start", 1, 0),
        ("end", 1, 1),
        ("start", 2, 1),
        ("end", 2, 2),
        ("start", 3, 2),
        ("end", 3, 3),
    ]
    restored = read_checkpoint(tmp_path / "checkpoint", "key")
    assert restored and restored[0]["epoch"] == 2
