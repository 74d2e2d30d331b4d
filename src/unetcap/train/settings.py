"""How a run trains: the one definition of the training settings and their defaults.

Config `train` (workflow/schemas/config.schema.yaml, whose defaults a test holds equal to
these), the rule's params (`TRAIN_SETTINGS` in common.smk) and `train_run`'s keyword
arguments all come from `Settings`. The defaults are the paper's protocol; the remedies for
small subsets (`loss`, `batchnorm_momentum`, `steps_per_epoch`, `augment`) are off.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np

from unetcap import UnetcapError
from unetcap.study import format_number

OPTIMIZERS = ("adam", "sgd", "rmsprop")  # Keras defaults except the learning rate
SCHEDULES = ("constant", "plateau")
LOSSES = ("bce", "bce+dice")
GRAPPLER = ("auto", "on", "off")


@dataclass(frozen=True)
class Augment:
    """Random changes to every training batch (off by default; the paper used none).

    flip: each image flipped left-right and up-down, each with probability 1/2;
    rotate: turned by an angle drawn uniformly from [-rotate, rotate] degrees (bilinear
    image, nearest mask, zeros outside);
    intensity: a gamma exp(u) and a gain 1 + v, u and v uniform in [-intensity, intensity],
    the result clipped to [0, 1]."""

    flip: bool = False
    rotate: float = 0.0
    intensity: float = 0.0

    @property
    def active(self) -> bool:
        return self.flip or self.rotate > 0 or self.intensity > 0


@dataclass(frozen=True)
class Settings:
    """Config `train` without the job resources. See the schema for each key."""

    max_epochs: int = 50
    patience: int = 5
    min_epochs: int = 0
    batch_size: int = 8
    optimizer: str = "adam"
    schedule: str = "constant"
    plateau_factor: float = 0.1
    plateau_patience: int = 3
    loss: str = "bce"
    batchnorm_momentum: float = 0.99
    steps_per_epoch: int = 0
    augment: Augment = field(default_factory=Augment)
    keep_segmentations: int = 4
    threads: int = 2
    save_model: bool = False
    checkpoint_every: float = 60.0
    grappler: str = "auto"

    @classmethod
    def names(cls) -> list[str]:
        """The keys of config `train` that are training settings (the rest are resources)."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_config(cls, **values) -> Settings:
        """Settings from config-like values (augment as a mapping); unknown keys and bad
        values raise one UnetcapError naming every `train.<key>` at fault."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise UnetcapError(f"unknown training settings {['train.' + k for k in unknown]} (known: {cls.names()})")
        augment = values.get("augment", {})
        if isinstance(augment, dict):
            bad = sorted(set(augment) - {f.name for f in dataclasses.fields(Augment)})
            if bad:
                raise UnetcapError(f"unknown settings {['train.augment.' + k for k in bad]}")
            values = {**values, "augment": Augment(**_floats(augment, ("rotate", "intensity")))}
        values = _floats(values, ("plateau_factor", "checkpoint_every", "batchnorm_momentum"))
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        bad = []
        for name in ("max_epochs", "patience", "batch_size", "plateau_patience", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad.append(f"train.{name} must be a positive integer, not {value!r}")
        for name in ("steps_per_epoch", "keep_segmentations", "min_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                bad.append(f"train.{name} must be a whole number >= 0, not {value!r}")
        for name, allowed in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("loss", LOSSES),
            ("grappler", GRAPPLER),
        ):
            if getattr(self, name) not in allowed:
                bad.append(f"train.{name} {getattr(self, name)!r} is not one of {list(allowed)}")
        if not self.checkpoint_every >= 0:
            bad.append(f"train.checkpoint_every must be >= 0 seconds, not {self.checkpoint_every!r}")
        if not 0 <= self.batchnorm_momentum < 1:
            bad.append(f"train.batchnorm_momentum must be in [0, 1), not {self.batchnorm_momentum!r}")
        if not 0 < self.plateau_factor < 1:
            bad.append(f"train.plateau_factor must be in (0, 1), not {self.plateau_factor!r}")
        if not isinstance(self.augment, Augment):
            bad.append(f"train.augment must be a mapping of {Augment.__annotations__}, not {self.augment!r}")
        else:
            if not 0 <= self.augment.rotate <= 180:
                bad.append(f"train.augment.rotate must be in [0, 180] degrees, not {self.augment.rotate!r}")
            if not 0 <= self.augment.intensity < 1:
                bad.append(f"train.augment.intensity must be in [0, 1), not {self.augment.intensity!r}")
        if bad:
            raise UnetcapError("bad training settings: " + "; ".join(bad))

    def resume_key(self) -> dict:
        """The settings that change a run's numbers (all but threads, checkpointing, saving
        and what is kept): a checkpoint must share them to be resumed, and metrics.json
        records them."""
        kept = (
            "max_epochs",
            "patience",
            "min_epochs",
            "batch_size",
            "optimizer",
            "schedule",
            "plateau_factor",
            "plateau_patience",
            "loss",
            "batchnorm_momentum",
            "steps_per_epoch",
        )
        return {**{k: getattr(self, k) for k in kept}, "augment": dataclasses.asdict(self.augment)}


def _floats(values: dict, names) -> dict:
    """`values` with the numbers under `names` as floats (YAML writes 60 for 60.0)."""
    return {
        k: float(v) if k in names and isinstance(v, int) and not isinstance(v, bool) else v for k, v in values.items()
    }


def run_seed(seed: int, size: int, backbone: str, lr: float, reg: float, fold: int) -> int:
    """The run's seed: the first 31 bits of sha256("seed|size|backbone|lr|reg|fold"), with
    lr and reg written as in paths."""
    text = f"{seed}|{size}|{backbone}|{format_number(lr)}|{format_number(reg)}|{fold}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def derived_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (the run seed, an epoch, a layer number)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0]) & 0x7FFFFFFF
