"""How a run trains: the training settings, with the defaults and bounds of the schema.

Config `train` (workflow/schemas/config.schema.yaml, the one place where their defaults and
bounds are written), the rule's params (`TRAIN_SETTINGS` in common.smk) and `train_run`'s
keyword arguments all go through `Settings.from_config`, which fills and checks them
against the schema. The defaults are the paper's protocol; the remedies for small subsets
(`loss`, `batchnorm_momentum`, `steps_per_epoch`, `augment`) are off.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from unetcap import UnetcapError, schema
from unetcap.study import format_number

# The values each choice may take, as the schema lists them.
OPTIMIZERS = schema.allowed("train", "optimizer")  # Keras defaults except the learning rate
SCHEDULES = schema.allowed("train", "schedule")
LOSSES = schema.allowed("train", "loss")
GRAPPLER = schema.allowed("train", "grappler")
PRECISIONS = schema.allowed("train", "precision")
BACKENDS = schema.allowed("train", "backend")


@dataclass(frozen=True)
class Augment:
    """Random changes to every training batch (config `train.augment`; the paper used none).

    flip: each image flipped left-right and up-down, each with probability 1/2;
    rotate: turned by an angle drawn uniformly from [-rotate, rotate] degrees (bilinear
    image, nearest mask, zeros outside);
    intensity: a gamma exp(u) and a gain 1 + v, u and v uniform in [-intensity, intensity],
    the result clipped to [0, 1]."""

    flip: bool
    rotate: float
    intensity: float

    @property
    def active(self) -> bool:
        return self.flip or self.rotate > 0 or self.intensity > 0


@dataclass(frozen=True)
class Settings:
    """Config `train` without the job resources (`threads` and `gpu_memory_mb` are here:
    the trainer sets TensorFlow up with them). See the schema for each key, its default and
    its bounds; build it with `from_config`."""

    max_epochs: int
    patience: int
    min_epochs: int
    batch_size: int
    optimizer: str
    schedule: str
    plateau_factor: float
    plateau_patience: int
    loss: str
    batchnorm_momentum: float
    steps_per_epoch: int
    augment: Augment
    keep_segmentations: int
    threads: int
    save_model: bool
    checkpoint_every: float
    grappler: str
    precision: str
    jit: bool
    gpu_memory_mb: int | None
    backend: str

    @classmethod
    def names(cls) -> list[str]:
        """The keys of config `train` that are training settings (the rest are resources)."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_config(cls, **values) -> Settings:
        """Settings from config-like values (augment as a mapping), the schema's defaults for
        those not given; unknown keys and bad values raise one UnetcapError naming every
        `train.<key>` at fault."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise UnetcapError(f"unknown training settings {['train.' + k for k in unknown]} (known: {cls.names()})")
        values = schema.validated(values, "train")
        for resource in set(values) - set(cls.names()):  # mem_mb, runtime, gpus: the job's
            del values[resource]
        augment = Augment(**_floats(values["augment"], ("rotate", "intensity")))
        values = _floats(values, ("plateau_factor", "checkpoint_every", "batchnorm_momentum"))
        return cls(**{**values, "augment": augment})

    def resume_key(self) -> dict:
        """The settings that change a run's numbers (all but threads, checkpointing, saving,
        what is kept and the GPU's memory): a checkpoint must share them to be resumed, and
        metrics.json records them."""
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
            "precision",
            "jit",
            "backend",
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
