"""A run's network for the configured backend (config `train.backend`): TensorFlow's
(`model`, the default) or PyTorch's (`pytorch`), each with the interface of `model.Network`,
and the packages whose versions a run records for it."""

from __future__ import annotations

from unetcap.train import model, pytorch
from unetcap.train.settings import Settings

BUILDERS = {"tensorflow": model.build_network, "pytorch": pytorch.build_network}

# The distributions metrics.json records, per backend.
VERSIONS = {
    "tensorflow": ("tensorflow", "tf_keras", "segmentation_models", "efficientnet", "numpy", "python"),
    "pytorch": ("torch", "segmentation_models_pytorch", "timm", "numpy", "python"),
}


def build_network(backbone: str, image_size: int, lr: float, reg: float, seed: int, settings: Settings):
    """The build step of a run (the trainer's, and the benchmarks'): the backend set up for
    `settings` (threads, GPU memory, ...), the U-Net, its optimizer and train step."""
    return BUILDERS[settings.backend](backbone, image_size, lr, reg, seed, settings)
