"""Faults injected through the environment, for testing a cluster set-up and the trainer's
recovery: `UNETCAP_FAULT` (see `faults`)."""

from __future__ import annotations

import os
from pathlib import Path

from unetcap import UnetcapError

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


def raise_injected_failure(found: dict, run_dir: Path) -> None:
    """RuntimeError when a `fail:TEXT` fault names this run's folder."""
    for text in found.get("fail", []):
        if text in str(run_dir):
            raise RuntimeError(f"injected failure ({FAULT_ENV} fail:{text}) in {run_dir}")
