"""Faults injected through the environment, for testing a cluster set-up and the trainer's
recovery: `UNETCAP_FAULT` (see `faults`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from unetcap import UnetcapError
from unetcap.train.loop import Hook

log = logging.getLogger(__name__)

FAULT_ENV = "UNETCAP_FAULT"
FAULT_EXIT_CODE = 75
KINDS = ("exit_after_epoch", "fail", "diverge_at_epoch")


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
        if kind not in KINDS or not value or (kind != "fail" and not epoch.isdigit()):
            raise UnetcapError(
                f"{FAULT_ENV}={os.environ[FAULT_ENV]!r}: cannot read {spec!r} "
                "(fail:TEXT, exit_after_epoch:K[:TEXT], diverge_at_epoch:K[:TEXT])"
            )
        found.setdefault(kind, []).append(value)
    return found


def fault_epochs(found: dict, kind: str, run_dir: Path) -> set[int]:
    """The epochs at which fault `kind` hits the run in `run_dir`."""
    epochs = set()
    for value in found.get(kind, []):
        epoch, _, text = value.partition(":")
        if text in str(run_dir):
            epochs.add(int(epoch))
    return epochs


@dataclass
class FaultHook(Hook):
    """The faults of `UNETCAP_FAULT` that hit a run's epochs, plugged into `fit` as a hook:
    the learning rate jumps to 1e30 at the start of each epoch of `diverge_at`; the process
    exits hard after each epoch of `exit_after`, once that epoch is checkpointed."""

    diverge_at: set
    exit_after: set

    @classmethod
    def for_run(cls, found: dict, run_dir: Path) -> FaultHook:
        return cls(fault_epochs(found, "diverge_at_epoch", run_dir), fault_epochs(found, "exit_after_epoch", run_dir))

    def on_epoch_start(self, loop, epoch: int) -> None:
        if epoch in self.diverge_at:
            loop.set_lr(1e30)

    def wants_checkpoint(self, epoch: int) -> bool:
        return epoch in self.exit_after

    def on_epoch_end(self, loop, epoch: int, row: dict) -> None:
        if epoch in self.exit_after:
            log.warning("injected exit after epoch %d (%s)", epoch, FAULT_ENV)
            logging.shutdown()
            os._exit(FAULT_EXIT_CODE)


def raise_injected_failure(found: dict, run_dir: Path) -> None:
    """RuntimeError when a `fail:TEXT` fault names this run's folder."""
    for text in found.get("fail", []):
        if text in str(run_dir):
            raise RuntimeError(f"injected failure ({FAULT_ENV} fail:{text}) in {run_dir}")
