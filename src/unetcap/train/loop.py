"""The epoch loop: batches through the train step, validation after every epoch, early
stopping with the best weights kept, the plateau schedule, divergence, checkpoints.

`fit` replaces Keras' fit, EarlyStopping, ReduceLROnPlateau and BackupAndRestore: it traces
once, and a run resumed from its checkpoint ends bit-identical (on CPU) to one that was
never interrupted, because every random draw of an epoch is seeded by (run seed, epoch).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetcap.scoring import Score
from unetcap.train.checkpoint import write_checkpoint
from unetcap.train.data import RunData, augment_batch, epoch_batches
from unetcap.train.settings import Settings

log = logging.getLogger(__name__)


def new_state(key: str, lr: float) -> dict:
    """The loop's state before the first epoch (what a checkpoint saves besides weights)."""
    return {
        "key": key,
        "epoch": 0,
        "best_epoch": 0,
        "best_val_loss": math.inf,
        "wait": 0,
        "plateau_wait": 0,
        "lr": float(lr),
        "rows": [],
        "seconds_train": 0.0,
        "resumed": 0,
    }


def train_epoch(train_step, data: RunData, settings: Settings, seed: int, epoch: int) -> tuple[float, float, int]:
    """One epoch of optimizer steps (see `epoch_batches`), augmented when settings say so.
    Returns the mean batch loss weighted by batch size like Keras (or the first non-finite
    batch loss, where the epoch stops), the seconds of the first step and the steps taken."""
    batches = epoch_batches(
        len(data.x_train), settings.batch_size, settings.steps_per_epoch, np.random.default_rng([seed, epoch])
    )
    augment = np.random.default_rng([seed, epoch, 1]) if settings.augment.active else None
    total, count, first = 0.0, 0, None
    for step, idx in enumerate(batches, 1):
        x, y = data.x_train[idx], data.y_train[idx]
        if augment is not None:
            x, y = augment_batch(x, y, settings.augment, augment)
        t = time.perf_counter()
        loss = float(train_step(x, y.astype(np.float32)))
        first = first if first is not None else time.perf_counter() - t
        if not math.isfinite(loss):
            return loss, first, step
        total, count = total + loss * len(idx), count + len(idx)
    return total / count, first, len(batches)


def score(predict, x: np.ndarray, y: np.ndarray, batch_size: int) -> Score:
    """BCE, soft Dice and global DICE of a set under the current weights (`predict`: a
    network's, numpy in and out)."""
    result = Score()
    for start in range(0, len(x), batch_size):
        result.add(y[start : start + batch_size], predict(x[start : start + batch_size]))
    return result


INFERENCE_PIXELS = 2**20  # pixels per prediction call when scoring the holdout pool


def score_holdout(predict, data: RunData, batch_size: int) -> list[tuple[str, Score]]:
    """Each holdout patient's Score under the current weights, all its sampled images read
    from the store patient by patient (inference only: no array of the whole pool is held),
    predicted in batches of max(batch_size, INFERENCE_PIXELS / S^2) images (1,024 at 32 px,
    16 at 256 px): prediction is per image, so the batch changes the cost, and the scores only
    by float rounding."""
    batch = max(batch_size, INFERENCE_PIXELS // data.image_size**2)
    scores = []
    for patient, rows in data.holdout:
        x, y = data.holdout_arrays(rows)
        scores.append((patient, score(predict, x, y, batch)))
    return scores


def validation_loss(val: Score, loss: str, penalty: float) -> float:
    """What early stopping watches: the training loss on the validation fold (BCE, plus the
    soft Dice loss of the whole fold for "bce+dice"), plus the L2 penalty, as in Keras."""
    return val.bce + (val.soft_dice_loss if loss == "bce+dice" else 0.0) + penalty


class Hook:
    """What a hook may do in `fit`, each a no-op here: act at the start of an epoch (before
    its batches) and at its end (after its checkpoint), and ask for a checkpoint after an
    epoch. The trainer's fault injection (`faults.FaultHook`) is one."""

    def on_epoch_start(self, loop: Loop, epoch: int) -> None:
        pass

    def wants_checkpoint(self, epoch: int) -> bool:
        return False

    def on_epoch_end(self, loop: Loop, epoch: int, row: dict) -> None:
        pass


@dataclass
class Loop:
    """What `fit` works with: the network (any backend's: `model.Network`), the data, the
    run's folder and seed, and its hooks."""

    net: object
    data: RunData
    settings: Settings
    seed: int
    checkpoint: Path
    hooks: tuple = field(default_factory=tuple)

    def set_lr(self, value: float) -> None:
        self.net.set_lr(value)


def fit(loop: Loop, state: dict, best_weights, started: float):
    """Train from `state` (new or resumed) until max_epochs or early stopping, updating
    `state` in place. Returns (status "ok" or "diverged", what stopped the run, the best
    weights or None when no epoch completed, seconds of the first train step)."""
    s = loop.settings
    status, detail, first_step = "ok", "", None
    attempt_start, last_checkpoint = started, time.perf_counter()
    loop.set_lr(state["lr"])
    while state["epoch"] < s.max_epochs and (state["wait"] < s.patience or state["epoch"] < s.min_epochs):
        epoch = state["epoch"] + 1
        t_epoch = time.perf_counter()
        lr_now = state["lr"]
        for hook in loop.hooks:
            hook.on_epoch_start(loop, epoch)
        loop.net.seed_dropout(loop.seed, epoch)
        loss, step_seconds, steps = train_epoch(loop.net.train_step, loop.data, s, loop.seed, epoch)
        first_step = first_step if first_step is not None else step_seconds
        row = {"epoch": epoch, "lr": lr_now, "loss": loss, "steps": steps}
        state["epoch"] = epoch
        if not math.isfinite(loss):
            status, detail = "diverged", f"training loss {loss} in epoch {epoch}"
            row["seconds"] = time.perf_counter() - t_epoch
            state["rows"].append(row)
            log.info("epoch %d/%d: loss %s (%.1f s)", epoch, s.max_epochs, loss, row["seconds"])
            break
        val_loss = _validate(loop, state, row, t_epoch)
        if not math.isfinite(val_loss):
            status, detail = "diverged", f"validation loss {val_loss} in epoch {epoch}"
            break
        current = loop.net.get_weights()
        best_weights = _early_stopping(loop, state, val_loss, current, best_weights)
        now = time.perf_counter()
        state["seconds_train"] += now - attempt_start
        attempt_start = now
        if now - last_checkpoint >= s.checkpoint_every or any(hook.wants_checkpoint(epoch) for hook in loop.hooks):
            write_checkpoint(
                loop.checkpoint,
                state,
                current,
                None if best_weights is current else best_weights,
                loop.net.optimizer_weights(),
            )
            last_checkpoint = time.perf_counter()
        for hook in loop.hooks:
            hook.on_epoch_end(loop, epoch, row)
    state["seconds_train"] += time.perf_counter() - attempt_start
    return status, _stop_reason(state, s, status, detail), best_weights, first_step


def _validate(loop: Loop, state: dict, row: dict, t_epoch: float) -> float:
    """Score the validation fold after the epoch of `row` (its history row, started at
    `t_epoch`): the row completed, appended to the history and logged. Returns the loss that
    early stopping watches."""
    s = loop.settings
    val = score(loop.net.predict, loop.data.x_val, loop.data.y_val, s.batch_size)
    val_loss = validation_loss(val, s.loss, loop.net.penalty())
    row.update(val_loss=val_loss, val_dice=val.dice, val_bce=val.bce, seconds=time.perf_counter() - t_epoch)
    state["rows"].append(row)
    log.info(
        "epoch %d/%d: loss %.5g val_loss %.5g val_dice %.4f lr %.3g, %d steps (%.1f s)",
        row["epoch"],
        s.max_epochs,
        row["loss"],
        val_loss,
        val.dice,
        row["lr"],
        row["steps"],
        row["seconds"],
    )
    return val_loss


def _early_stopping(loop: Loop, state: dict, val_loss: float, current, best_weights):
    """Keras' EarlyStopping and ReduceLROnPlateau after an epoch of validation loss
    `val_loss` and weights `current`: a strictly better epoch becomes the best (its weights
    returned), any other counts towards patience (and, with schedule "plateau", towards a
    lower learning rate). Returns the best weights so far."""
    s = loop.settings
    if val_loss < state["best_val_loss"]:  # Keras' EarlyStopping: strictly better
        state.update(best_val_loss=val_loss, best_epoch=state["epoch"], wait=0, plateau_wait=0)
        return current
    state["wait"] += 1
    state["plateau_wait"] += 1
    if s.schedule == "plateau" and state["plateau_wait"] >= s.plateau_patience:
        state["lr"], state["plateau_wait"] = state["lr"] * s.plateau_factor, 0
        loop.set_lr(state["lr"])
        log.info("learning rate reduced to %.3g", state["lr"])
    return best_weights


def _stop_reason(state: dict, s: Settings, status: str, detail: str) -> str:
    """What stopped the run: `detail` when it diverged (logged with the weights kept), else
    early stopping or max_epochs."""
    if status == "diverged":
        log.warning(
            "diverged: %s; keeping the weights of %s",
            detail,
            f"epoch {state['best_epoch']}" if state["best_epoch"] else "initialisation",
        )
    elif not detail:
        stopped = state["wait"] >= s.patience and state["epoch"] >= s.min_epochs
        detail = "early stopping" if stopped else "max_epochs"
    return detail
