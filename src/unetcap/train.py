"""One training run (DESIGN §6-8): a U-Net trained from scratch on one fold of one dataset
size, scored on its validation fold and on the subset's test set.

The model is `segmentation_models.Unet(backbone, encoder_weights=None, input_shape=(S, S, 1),
classes=1, activation="sigmoid")` with an L2 penalty `reg * sum(w**2)` on every convolution,
depthwise-convolution and dense kernel (segmentation-models' own set_regularization misses
EfficientNet's depthwise kernels). Loss: mean binary cross-entropy + the penalty. Training
stops after `max_epochs`, or early when the validation loss has not improved for `patience`
epochs; the weights of the best epoch are restored in every case. As in Keras, the
validation loss that early stopping watches includes the penalty; the reported BCE does not.

Determinism: the run's seed is derived from the config seed and the run's wildcards
(`run_seed`); the initial weights follow it, each epoch's shuffle order and dropout masks
follow (seed, epoch), and TensorFlow runs with pinned thread counts and (on CPU) op
determinism. On CPU, the same run with the same thread count gives bit-identical metrics,
also when it was interrupted and resumed from its checkpoint.

A checkpoint (`checkpoint/state.npz` in the run folder) holds the weights, the optimizer
state, the best weights, the early-stopping state and the history so far. It is written
atomically (temporary name, fsync, rename) after an epoch once `checkpoint_every` seconds
have passed since the last one (0: after every epoch); a rerun of a killed run resumes from
it when it was made with the same run, settings and data, and it is removed when the run
completes. Snakemake does not delete it: it is no declared output.

Fixed cost per run (it dominates small runs): exactly two functions are traced, a train
step and a predict function, each once (any batch size; no autograph), and validation loss
and DICE come from predictions in numpy; the optimizer is Keras' legacy (fused) one with
its slots made before tracing; grappler is off for the train step on CPU. Together this
cuts the first step 3-4 times against compile + fit + evaluate.

This is the only module that imports TensorFlow, and only inside functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetcap import UnetcapError
from unetcap.metrics import SCHEMA, Score, write_history, write_metrics
from unetcap.provenance import device, host, versions
from unetcap.study import BACKBONES, format_number

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "rmsprop")  # Keras defaults except the learning rate
SCHEDULES = ("constant", "plateau")
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.npz"
FAULT_ENV = "UNETCAP_FAULT"
FAULT_EXIT_CODE = 75
VERSIONS = ("tensorflow", "tf_keras", "segmentation_models", "efficientnet", "numpy", "python")


# ---------------------------------------------------------------- settings and seeds
@dataclass(frozen=True)
class Settings:
    """How a run trains (config `train`). See the README for each key."""

    max_epochs: int = 50
    patience: int = 5
    batch_size: int = 8
    optimizer: str = "adam"
    schedule: str = "constant"
    plateau_factor: float = 0.1
    plateau_patience: int = 3
    threads: int = 2
    save_model: bool = False
    checkpoint_every: float = 60.0

    def check(self) -> None:
        bad = []
        for name in ("max_epochs", "patience", "batch_size", "plateau_patience", "threads"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad.append(f"train.{name} must be a positive integer, not {getattr(self, name)!r}")
        if self.optimizer not in OPTIMIZERS:
            bad.append(f"train.optimizer {self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            bad.append(f"train.schedule {self.schedule!r} is not one of {list(SCHEDULES)}")
        if not self.checkpoint_every >= 0:
            bad.append(f"train.checkpoint_every must be >= 0 seconds, not {self.checkpoint_every!r}")
        if not 0 < self.plateau_factor < 1:
            bad.append(f"train.plateau_factor must be in (0, 1), not {self.plateau_factor!r}")
        if bad:
            raise UnetcapError("bad training settings: " + "; ".join(bad))

    def resume_key(self) -> dict:
        """The settings a checkpoint must share to be resumed (all that change the numbers
        except the thread count)."""
        return {k: getattr(self, k) for k in ("max_epochs", "patience", "batch_size", "optimizer",
                                               "schedule", "plateau_factor", "plateau_patience")}


def run_seed(seed: int, size: int, backbone: str, lr: float, reg: float, fold: int) -> int:
    """The run's seed: the first 31 bits of sha256("seed|size|backbone|lr|reg|fold"), with
    lr and reg written as in paths."""
    text = f"{seed}|{size}|{backbone}|{format_number(lr)}|{format_number(reg)}|{fold}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _derived(*parts: int) -> int:
    """A 31-bit seed derived from integers (the run seed, an epoch, a layer number)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0]) & 0x7FFFFFFF


def faults() -> dict[str, list[str]]:
    """Faults injected through the environment variable UNETCAP_FAULT, for tests; a
    comma-separated list of:
    `fail:TEXT`: a run whose folder path contains TEXT raises RuntimeError before training;
    `exit_after_epoch:K[:TEXT]`: the process exits hard (os._exit, code 75) right after
    epoch K is checkpointed (in runs whose folder contains TEXT, if given);
    `diverge_at_epoch:K[:TEXT]`: the learning rate jumps to 1e30 at epoch K, so the loss
    overflows and the run diverges for real."""
    found: dict[str, list[str]] = {}
    for spec in filter(None, (s.strip() for s in os.environ.get(FAULT_ENV, "").split(","))):
        kind, _, value = spec.partition(":")
        epoch = value.partition(":")[0]
        if (kind not in ("exit_after_epoch", "fail", "diverge_at_epoch") or not value
                or (kind != "fail" and not epoch.isdigit())):
            raise UnetcapError(f"{FAULT_ENV}={os.environ[FAULT_ENV]!r}: cannot read {spec!r} "
                               "(fail:TEXT, exit_after_epoch:K[:TEXT], diverge_at_epoch:K[:TEXT])")
        found.setdefault(kind, []).append(value)
    return found


def _fault_epochs(found: dict, kind: str, run_dir: Path) -> set[int]:
    """The epochs at which fault `kind` hits the run in `run_dir`."""
    epochs = set()
    for value in found.get(kind, []):
        epoch, _, text = value.partition(":")
        if text in str(run_dir):
            epochs.add(int(epoch))
    return epochs


# ---------------------------------------------------------------- data
@dataclass
class RunData:
    """The arrays of one run: images (n, S, S, 1) float32 and masks (n, S, S, 1) uint8."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_size: int
    data_sha256: str

    def counts(self) -> dict[str, int]:
        return {"train": len(self.x_train), "val": len(self.x_val), "test": len(self.x_test)}


def load_run_data(images, masks, store, manifest, size: int, fold: int) -> RunData:
    """The train, val and test arrays of one fold of one dataset size, read from the
    prepared store and the split manifest (docs/contracts.md), checked before training:
    shapes against store.json, the manifest's size and rows, images finite in [0, 1],
    masks 0/1. Raises one UnetcapError naming the file and what is wrong."""
    from unetcap.prepare import load_store
    from unetcap.splits import fold_indices, read_manifest

    image_array, mask_array, meta = load_store(store, images, masks)
    n, s = int(meta["n_images"]), int(meta["image_size"])
    problems = []
    if s % 32:
        problems.append(f"{store}: image_size {s} is not a multiple of 32, which the U-Net "
                        "needs (it halves the image 5 times): set image_size to one")
    plan = read_manifest(manifest)
    if plan.get("size") != size:
        problems.append(f"{manifest}: manifest of size {plan.get('size')}, the run asks for size {size}")
    if problems:
        raise UnetcapError("; ".join(problems))
    try:
        rows = fold_indices(plan, fold)
    except (KeyError, TypeError) as err:
        raise UnetcapError(f"{manifest}: malformed split manifest ({err!r})") from None
    except UnetcapError as err:
        raise UnetcapError(f"{manifest}: {err}") from None
    for part, idx in rows.items():
        outside = [i for i in idx if not 0 <= i < n]
        if outside:
            problems.append(f"{manifest}: {part} rows {outside[:5]} are outside the store's 0..{n - 1}")
        if not idx:
            problems.append(f"{manifest}: fold {fold} has no {part} images")
    if problems:
        raise UnetcapError("; ".join(problems))
    arrays = {}
    for part, idx in rows.items():
        idx = np.asarray(idx, dtype=np.int64)
        x = np.ascontiguousarray(image_array[idx], dtype=np.float32)
        y = np.ascontiguousarray(mask_array[idx], dtype=np.uint8)
        bad_x = ~np.isfinite(x).all(axis=(1, 2)) | (x.min(axis=(1, 2)) < 0) | (x.max(axis=(1, 2)) > 1)
        if bad_x.any():
            problems.append(f"{images}: rows {idx[bad_x][:5].tolist()} are not finite values in [0, 1]")
        bad_y = y.max(axis=(1, 2)) > 1
        if bad_y.any():
            problems.append(f"{masks}: rows {idx[bad_y][:5].tolist()} are not 0/1 masks")
        arrays[part] = (x[..., None], y[..., None])
    if problems:
        raise UnetcapError("; ".join(problems))
    return RunData(*arrays["train"], *arrays["val"], *arrays["test"], image_size=s,
                   data_sha256=str(meta["data_sha256"]))


# ---------------------------------------------------------------- TensorFlow and the model
GRAPPLER = ("auto", "on", "off")


def configure_tensorflow(threads: int, grappler: str = "auto") -> dict[str, bool]:
    """Pin TensorFlow's intra- and inter-op thread pools to `threads` (the float results on
    CPU depend on it), enable op determinism when no GPU is visible, and set grappler (the
    graph optimizer) for the train step. Returns what is in effect: {"gpu", "deterministic",
    "grappler_train", "grappler_predict"} (the latter for `make_functions`).

    grappler "auto": on CPU, off for the train step (it doubles the first step's cost and
    saves nothing later) and on for predictions (its inference rewrites make them ~20 %
    faster); with a GPU, on for both. "on" / "off": for both.

    On a GPU op determinism stays off: TensorFlow has no deterministic GPU kernel for the
    gradient of UpSampling2D (nearest), which every U-Net decoder uses, and raises. GPU runs
    are therefore not bit-reproducible. Thread counts can only be set before TensorFlow
    starts: a process that already runs with other counts raises UnetcapError."""
    import tensorflow as tf

    if grappler not in GRAPPLER:
        raise UnetcapError(f"train.grappler {grappler!r} is not one of {list(GRAPPLER)}")
    threading = tf.config.threading
    for get, put, what in ((threading.get_intra_op_parallelism_threads,
                            threading.set_intra_op_parallelism_threads, "intra-op"),
                           (threading.get_inter_op_parallelism_threads,
                            threading.set_inter_op_parallelism_threads, "inter-op")):
        if get() != threads:
            try:
                put(threads)
            except RuntimeError:
                raise UnetcapError(f"TensorFlow already runs with {get()} {what} threads in this "
                                   f"process; cannot pin {threads} (start a new process)") from None
    gpu = bool(tf.config.list_physical_devices("GPU"))
    if not gpu:
        tf.config.experimental.enable_op_determinism()
    train_on = grappler == "on" or (grappler == "auto" and gpu)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not train_on})
    return {"gpu": gpu, "deterministic": not gpu, "grappler_train": train_on,
            "grappler_predict": grappler != "off"}


def _import_sm():
    import segmentation_models as sm  # needs SM_FRAMEWORK=tf.keras, set by `import unetcap`

    return sm


# kernel attribute of a layer -> the attribute of its regularizer
KERNELS = {"kernel": "kernel_regularizer", "depthwise_kernel": "depthwise_regularizer",
           "pointwise_kernel": "pointwise_regularizer"}


def kernel_variables(model) -> list:
    """(layer, attribute, variable) of every convolution, depthwise/separable convolution and
    dense kernel of `model` (nested models included)."""
    found = []
    for layer in _all_layers(model):
        for attr in KERNELS:
            var = getattr(layer, attr, None)
            if var is not None and hasattr(var, "assign"):
                found.append((layer, attr, var))
    return found


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


def add_l2(model, reg: float) -> int:
    """Add `reg * sum(w**2)` of every kernel to `model.losses` (one loss per kernel, as if the
    layer had been built with `kernel_regularizer=l2(reg)`; the layer configs say so too).
    Returns the number of kernels; adds nothing when reg is 0."""
    import functools

    import tensorflow as tf

    kernels = kernel_variables(model)
    if reg <= 0:
        return 0
    regularizer = tf.keras.regularizers.L2(reg)
    for layer, attr, var in kernels:
        setattr(layer, KERNELS[attr], regularizer)
        layer.add_loss(functools.partial(regularizer, var))
    return len(kernels)


def build_model(backbone: str, image_size: int, reg: float, seed: int):
    """The run's U-Net with its L2 penalty, initial weights drawn from `seed`. Dropout layers
    get their own random generators, reseeded per epoch by `seed_dropout`."""
    import tensorflow as tf

    if backbone not in BACKBONES:
        raise UnetcapError(f"backbone {backbone!r} is not one of {list(BACKBONES)}")
    sm = _import_sm()
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    # Dropout draws from tf.random.Generator objects (state in a variable) instead of
    # stateful ops whose hidden state a resumed process could not restore.
    tf.keras.backend.experimental.enable_tf_random_generator()
    model = sm.Unet(backbone, encoder_weights=None, input_shape=(image_size, image_size, 1),
                    classes=1, activation="sigmoid")
    add_l2(model, reg)
    for layer in _dropout_layers(model):
        layer._random_generator._maybe_init()  # create the generator outside any tf.function
    return model


def _dropout_layers(model) -> list:
    return [layer for layer in _all_layers(model)
            if getattr(getattr(layer, "_random_generator", None), "_rng_type", None) is not None
            and getattr(layer, "rate", 0)]


def seed_dropout(model, seed: int, epoch: int) -> None:
    """Reseed every dropout layer's generator from (seed, epoch, layer number)."""
    for i, layer in enumerate(_dropout_layers(model)):
        generator = layer._random_generator._generator
        if generator is None:
            raise UnetcapError(f"dropout layer {layer.name} has no random generator (tf-keras changed?)")
        generator.reset_from_seed(_derived(seed, epoch, i))


def penalty(model) -> float:
    """The L2 penalty of the current weights (0 without one)."""
    import tensorflow as tf

    return float(tf.add_n(model.losses)) if model.losses else 0.0


def make_optimizer(name: str, lr: float, model):
    """A Keras optimizer with its slots already created (so the train step traces once)."""
    import tensorflow as tf

    legacy = tf.keras.optimizers.legacy  # fused kernels: a third of the new optimizers' graph
    optimizer = {"adam": legacy.Adam, "sgd": legacy.SGD, "rmsprop": legacy.RMSprop}[name](learning_rate=lr)
    optimizer._create_all_weights(model.trainable_variables)
    return optimizer


def make_functions(model, optimizer, image_size: int, grappler_predict: bool | None = None):
    """(train_step, predict): one compiled function each, for any batch size. train_step(x, y)
    applies one update and returns the batch loss (BCE + penalty); predict(x) gives p.
    `grappler_predict` (if given) switches grappler on or off around every predict call,
    whatever it is for the train step: each function is optimised once, under its setting."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, image_size, image_size, 1), tf.float32)
    bce = tf.keras.losses.BinaryCrossentropy()
    variables = model.trainable_variables

    @tf.function(input_signature=[spec, spec], autograph=False, jit_compile=False)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = bce(y, model(x, training=True))
            if model.losses:
                loss = loss + tf.add_n(model.losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    @tf.function(input_signature=[spec], autograph=False, jit_compile=False)
    def predict(x):
        return model(x, training=False)

    options = tf.config.optimizer
    train_on = not options.get_experimental_options().get("disable_meta_optimizer", False)
    if grappler_predict is None or grappler_predict == train_on:
        return train_step, predict

    def predict_switched(x):
        options.set_experimental_options({"disable_meta_optimizer": not grappler_predict})
        try:
            return predict(x)
        finally:
            options.set_experimental_options({"disable_meta_optimizer": not train_on})

    return train_step, predict_switched


def train_epoch(train_step, x: np.ndarray, y: np.ndarray, batch_size: int,
                rng: np.random.Generator) -> tuple[float, float]:
    """One pass over (x, y) in the order `rng` shuffles; returns the mean batch loss,
    weighted by batch size like Keras (or the first non-finite batch loss, where the epoch
    stops), and the seconds of the first step."""
    order = rng.permutation(len(x))
    total, count, first = 0.0, 0, None
    for start in range(0, len(x), batch_size):
        idx = np.sort(order[start:start + batch_size])
        t = time.perf_counter()
        loss = float(train_step(x[idx], y[idx].astype(np.float32)))
        first = first if first is not None else time.perf_counter() - t
        if not math.isfinite(loss):
            return loss, first
        total, count = total + loss * len(idx), count + len(idx)
    return total / count, first


def score(predict, x: np.ndarray, y: np.ndarray, batch_size: int) -> Score:
    """BCE and global DICE of a set under the current weights."""
    result = Score()
    for start in range(0, len(x), batch_size):
        result.add(y[start:start + batch_size], predict(x[start:start + batch_size]).numpy())
    return result


# ---------------------------------------------------------------- checkpoint
def _write_checkpoint(folder: Path, state: dict, weights, best, optimizer_weights) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"state": np.array(json.dumps(state))}
    arrays.update({f"w{i}": w for i, w in enumerate(weights)})
    if best is not None:
        arrays.update({f"b{i}": w for i, w in enumerate(best)})
    arrays.update({f"o{i}": w for i, w in enumerate(optimizer_weights)})
    tmp = folder / f".{CHECKPOINT_FILE}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / CHECKPOINT_FILE)


def _read_checkpoint(folder: Path, key: str):
    """(state, weights, best or None, optimizer weights) of a checkpoint made with `key`,
    else None (no checkpoint, another run's, or unreadable: it is then discarded)."""
    path = folder / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["state"]))
            pick = lambda prefix: [data[f"{prefix}{i}"] for i in range(  # noqa: E731
                sum(1 for k in data.files if k[0] == prefix and k[1:].isdigit()))]
            weights, best, opt = pick("w"), pick("b") or None, pick("o")
    except Exception as err:  # any damage means: start again
        log.warning("discarding unreadable checkpoint %s (%s)", path, err)
        return None
    if state.get("key") != key:
        log.warning("discarding checkpoint %s: it belongs to other settings or data", path)
        return None
    return state, weights, best, opt


# ---------------------------------------------------------------- the run
def train_run(images, masks, store, manifest, metrics, history, *, size: int, backbone: str,
              lr: float, reg: float, fold: int, seed: int, config_sha256: str = "",
              max_epochs: int = 50, patience: int = 5, batch_size: int = 8, optimizer: str = "adam",
              schedule: str = "constant", plateau_factor: float = 0.1, plateau_patience: int = 3,
              threads: int = 2, save_model: bool = False, checkpoint_every: float = 60.0,
              grappler: str = "auto") -> dict:
    """Train one run and write its `metrics` (metrics.json) and `history` (history.csv, one
    row per epoch), both atomically, and return the metrics.

    Inputs are the prepared store (`images`, `masks`, `store` = images.npy, masks.npy,
    store.json) and the size's split manifest; `fold` is validated on. Bad inputs raise
    UnetcapError before any training and leave nothing behind.

    Divergence: when a batch's loss or an epoch's validation loss is NaN or infinite, the
    run stops and is written with status "diverged" and the metrics of its best weights so
    far, or of its initial weights when it diverges in its first epoch (best_epoch 0). Its
    history then ends with the diverged epoch (loss non-finite, validation empty).
    `epochs` is the number of epochs run, the diverged one included.

    Schedule "plateau" multiplies the learning rate by `plateau_factor` after
    `plateau_patience` epochs without a better validation loss. With `save_model`, the
    trained model (best weights) is also written as model.keras in the run folder (not a
    declared output). The folder's checkpoint/ is resumed when present (see the module
    docstring) and removed at the end. `threads` pins TensorFlow's thread pools (results on
    CPU are bit-identical only at the same count); `grappler` is explained at
    `configure_tensorflow`. Faults for tests come from the environment (see `faults`).
    """
    settings = Settings(max_epochs, patience, batch_size, optimizer, schedule, float(plateau_factor),
                        plateau_patience, threads, bool(save_model), float(checkpoint_every))
    settings.check()
    if backbone not in BACKBONES:
        raise UnetcapError(f"backbone {backbone!r} is not one of {list(BACKBONES)}")
    metrics, history = Path(metrics), Path(history)
    run_dir = metrics.parent
    injected = faults()
    for text in injected.get("fail", []):
        if text in str(run_dir):
            raise RuntimeError(f"injected failure ({FAULT_ENV} fail:{text}) in {run_dir}")
    data = load_run_data(images, masks, store, manifest, size, fold)
    rseed = run_seed(seed, size, backbone, lr, reg, fold)
    run = {"size": size, "backbone": backbone, "family": BACKBONES[backbone].family,
           "depth": BACKBONES[backbone].depth, "lr": float(lr), "reg": float(reg), "fold": fold,
           "seed": rseed, "config_seed": seed}
    log.info("run %s: %s images, seed %d", run_dir, data.counts(), rseed)

    started = time.perf_counter()
    import tensorflow as tf

    _import_sm()
    tf_setup = configure_tensorflow(threads, grappler)
    seconds = {"import": time.perf_counter() - started}
    log.info("TensorFlow %s on %s, %d threads, op determinism %s, grappler %s (train) %s (predict)",
             tf.__version__, device(), threads,
             *("on" if tf_setup[k] else "off" for k in ("deterministic", "grappler_train", "grappler_predict")))
    t = time.perf_counter()
    model = build_model(backbone, data.image_size, reg, rseed)
    opt = make_optimizer(optimizer, lr, model)
    train_step, predict = make_functions(model, opt, data.image_size, tf_setup["grappler_predict"])
    seconds["build"] = time.perf_counter() - t
    initial = model.get_weights()

    folder = run_dir / CHECKPOINT_DIR
    key = hashlib.sha256(json.dumps({"run": run, "settings": settings.resume_key(),
                                     "data": data.data_sha256, "counts": data.counts()},
                                    sort_keys=True).encode()).hexdigest()
    (folder / f".{CHECKPOINT_FILE}.tmp").unlink(missing_ok=True)
    state = {"key": key, "epoch": 0, "best_epoch": 0, "best_val_loss": math.inf, "wait": 0,
             "plateau_wait": 0, "lr": float(lr), "rows": [], "seconds_train": 0.0, "resumed": 0}
    best_weights = None  # the weights of state["best_epoch"] (None before the first epoch)
    restored = _read_checkpoint(folder, key)
    if restored:
        state, weights, best, opt_weights = restored
        model.set_weights(weights)
        opt.set_weights(opt_weights)
        best_weights = best if best is not None else weights
        state["resumed"] += 1
        log.info("resumed from %s after epoch %d (best epoch %d)", folder / CHECKPOINT_FILE,
                 state["epoch"], state["best_epoch"])
    set_lr = lambda value: tf.keras.backend.set_value(opt.learning_rate, value)  # noqa: E731
    set_lr(state["lr"])

    status, detail = "ok", ""
    attempt_start = started
    diverge_at = _fault_epochs(injected, "diverge_at_epoch", run_dir)
    exit_after = _fault_epochs(injected, "exit_after_epoch", run_dir)
    first_step, last_checkpoint = None, time.perf_counter()
    while state["epoch"] < max_epochs and state["wait"] < patience:
        epoch = state["epoch"] + 1
        t_epoch = time.perf_counter()
        lr_now = state["lr"]
        if epoch in diverge_at:
            set_lr(1e30)
        seed_dropout(model, rseed, epoch)
        loss, step_seconds = train_epoch(train_step, data.x_train, data.y_train, batch_size,
                                         np.random.default_rng([rseed, epoch]))
        first_step = first_step if first_step is not None else step_seconds
        row = {"epoch": epoch, "lr": lr_now, "loss": loss}
        state["epoch"] = epoch
        if not math.isfinite(loss):
            status, detail = "diverged", f"training loss {loss} in epoch {epoch}"
            row["seconds"] = time.perf_counter() - t_epoch
            state["rows"].append(row)
            log.info("epoch %d/%d: loss %s (%.1f s)", epoch, max_epochs, loss, row["seconds"])
            break
        val = score(predict, data.x_val, data.y_val, batch_size)
        val_loss = val.bce + penalty(model)
        row.update(val_loss=val_loss, val_dice=val.dice, val_bce=val.bce,
                   seconds=time.perf_counter() - t_epoch)
        state["rows"].append(row)
        log.info("epoch %d/%d: loss %.5g val_loss %.5g val_dice %.4f lr %.3g (%.1f s)", epoch,
                 max_epochs, row["loss"], val_loss, val.dice, lr_now, row["seconds"])
        if not math.isfinite(val_loss):
            status, detail = "diverged", f"validation loss {val_loss} in epoch {epoch}"
            break
        current = model.get_weights()
        if val_loss < state["best_val_loss"]:  # Keras' EarlyStopping: strictly better
            state.update(best_val_loss=val_loss, best_epoch=epoch, wait=0, plateau_wait=0)
            best_weights = current
        else:
            state["wait"] += 1
            state["plateau_wait"] += 1
            if schedule == "plateau" and state["plateau_wait"] >= plateau_patience:
                state["lr"], state["plateau_wait"] = lr_now * plateau_factor, 0
                set_lr(state["lr"])
                log.info("learning rate reduced to %.3g", state["lr"])
        now = time.perf_counter()
        state["seconds_train"] += now - attempt_start
        attempt_start = now
        if now - last_checkpoint >= checkpoint_every or epoch in exit_after:
            _write_checkpoint(folder, state, current, None if best_weights is current else best_weights,
                              opt.get_weights())
            last_checkpoint = time.perf_counter()
        if epoch in exit_after:
            log.warning("injected exit after epoch %d (%s)", epoch, FAULT_ENV)
            logging.shutdown()
            os._exit(FAULT_EXIT_CODE)
    state["seconds_train"] += time.perf_counter() - attempt_start
    if status == "diverged":
        log.warning("diverged: %s; keeping the weights of %s", detail,
                    f"epoch {state['best_epoch']}" if state["best_epoch"] else "initialisation")

    # restore the best weights (the initial ones if no epoch completed) and score them
    model.set_weights(best_weights if state["best_epoch"] else initial)
    t = time.perf_counter()
    val = score(predict, data.x_val, data.y_val, batch_size)
    test = score(predict, data.x_test, data.y_test, batch_size)
    seconds_eval = time.perf_counter() - t

    result = {
        "schema": SCHEMA, "run": run, "status": status, "epochs": state["epoch"],
        "best_epoch": state["best_epoch"], "params": int(model.count_params()),
        "n_images": data.counts(),
        "val": {"bce": val.bce, "dice": val.dice}, "test": {"bce": test.bce, "dice": test.dice},
        "seconds": {"train": state["seconds_train"], "eval": seconds_eval,
                    "import": seconds["import"], "build": seconds["build"],
                    "first_step": first_step if first_step is not None else math.nan},
        "provenance": {"data_sha256": data.data_sha256, "config_sha256": str(config_sha256),
                       "versions": versions(*VERSIONS), "device": device(), "host": host()},
        "train": {**settings.resume_key(), "threads": threads, "deterministic": tf_setup["deterministic"],
                  "grappler_train": tf_setup["grappler_train"],
                  "grappler_predict": tf_setup["grappler_predict"],
                  "resumed": state["resumed"],
                  "stopped": detail or ("early stopping" if state["wait"] >= patience else "max_epochs")},
    }
    if save_model:
        tmp = run_dir / ".model.tmp.keras"
        model.save(tmp)
        os.replace(tmp, run_dir / "model.keras")
    write_history(state["rows"], history)
    shutil.rmtree(folder, ignore_errors=True)
    write_metrics(result, metrics)
    log.info("done: %s after %d epochs (best %d): val dice %.4f bce %.4g, test dice %.4f bce %.4g",
             status, state["epoch"], state["best_epoch"], val.dice, val.bce, test.dice, test.bce)
    return result
