"""PyTorch and the network (config `train.backend: pytorch`): the run's U-Net from
segmentation_models_pytorch, its L2 penalty, optimizer, train step and predictions, with the
same interface as the TensorFlow network (`model.Network`), so that the loop, the
checkpoints and the trainer are the same for both.

What matches the TensorFlow path, and where it differs:
- The model: `smp.Unet(encoder, encoder_weights=None, in_channels=1, classes=1)`, the
  decoder of segmentation-models (channels 256-128-64-32-16, BatchNorm, nearest
  upsampling); trained from scratch, nothing downloaded. EfficientNet is smp's port of the
  original (efficientnet-b0/b5, with its drop-connect) giving the decoder the features
  segmentation-models gives it (`pytorch_encoders`: smp's own would make a narrower
  decoder). Parameter counts (Keras' count: BatchNorm statistics included) at one input
  channel, as tests/test_pytorch.py checks: equal for the VGGs and EfficientNets, within
  0.05 % for the ResNets (PARAMS_TOLERANCE there says why).
- The loss: mean binary cross-entropy computed from the logits (PyTorch's stable form;
  Keras clips probabilities at 1e-7, which only matters for saturated pixels), plus the soft
  Dice loss of the batch with `loss: bce+dice` (the same formula), plus the L2 penalty
  `reg * sum(w**2)` of every convolution (depthwise ones included) and linear kernel: the
  Keras regularizers' penalty, added to the loss, not decoupled weight decay (AdamW's), so
  that Adam scales it by the gradient's history exactly as Keras does.
- Adam, SGD, RMSprop with Keras' defaults: epsilon 1e-7 (PyTorch's is 1e-8), RMSprop's
  rho 0.9 (PyTorch's alpha 0.99).
- BatchNorm: Keras' momentum m is PyTorch's 1 - m; without `batchnorm_momentum` every layer
  gets Keras' default 0.99 (PyTorch 0.01), as the TensorFlow encoders have.
- Initial weights: each library's own initialisers (Keras' VGG layers Glorot uniform,
  torchvision's VGG and ResNet He normal, smp's decoder He uniform), drawn from the run's
  seed; matching them layer by layer is not attempted (docs/backends.md).
- Batches, augmentation, the plateau schedule, early stopping, checkpoints, the threshold
  and DICE are the loop's, shared. Dropout and drop-connect draw from torch's generator,
  reseeded at each epoch from (run seed, epoch) like the TensorFlow dropout layers.
- Determinism: on CPU `torch.use_deterministic_algorithms` with pinned intra- and inter-op
  threads: the same run gives bit-identical numbers, also when resumed from its checkpoint.
  On a GPU it is off: there is no deterministic CUDA kernel for the gradient of nearest
  upsampling, which every decoder uses (the same reason as TensorFlow's).
- Precision: `mixed_bfloat16` and `mixed_float16` run the network under `torch.autocast`
  (the loss and metrics in float32); float16 scales the loss with a `GradScaler`, kept in
  the checkpoint. `jit` is TensorFlow's XLA and is refused here.
- GPU: cuDNN's autotuner on (`torch.backends.cudnn.benchmark`), TF32 left at PyTorch's
  defaults; `gpu_memory_mb` caps the process's share of the GPU
  (`torch.cuda.set_per_process_memory_fraction`); PyTorch's caching allocator grows as it
  needs, which is TensorFlow's memory growth.

Tensors are NCHW inside; the loop gives and gets numpy arrays (n, S, S, 1) as for
TensorFlow. torch is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np

from unetcap import UnetcapError
from unetcap.study import BACKBONES
from unetcap.train import pytorch_encoders
from unetcap.train.model import SMOOTH
from unetcap.train.settings import Settings, derived_seed

KERAS_BN_MOMENTUM = 0.99  # the TensorFlow encoders' BatchNormalization default
KERAS_EPSILON = 1e-7  # Keras optimizers' epsilon


def configure_torch(threads: int, gpu_memory_mb: int | None = None) -> dict:
    """Pin torch's intra- and inter-op threads to `threads`, make it deterministic on CPU,
    and set up the GPU when there is one (cuDNN autotuner, the memory cap). Returns what is
    in effect, with the keys of `model.configure_tensorflow`'s answer."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            raise UnetcapError(
                f"torch already runs with {torch.get_num_interop_threads()} inter-op threads in this "
                f"process; cannot pin {threads} (start a new process)"
            ) from None
    gpu = torch.cuda.is_available()
    torch.use_deterministic_algorithms(not gpu)
    limit = None
    if gpu:
        torch.backends.cudnn.benchmark = True
        if gpu_memory_mb:
            total = torch.cuda.get_device_properties(0).total_memory / 2**20
            torch.cuda.set_per_process_memory_fraction(min(1.0, gpu_memory_mb / total))
            limit = gpu_memory_mb
    return {
        "gpu": gpu,
        "deterministic": not gpu,
        "grappler_train": False,
        "grappler_predict": False,
        "memory_growth": gpu,
        "memory_limit_mb": limit,
    }


def build_model(backbone: str, seed: int, batchnorm_momentum: float | None = None):
    """The run's U-Net, initial weights drawn from `seed`, every BatchNorm at Keras'
    momentum `batchnorm_momentum` (None: 0.99) in PyTorch's convention (1 - m)."""
    import torch

    smp = pytorch_encoders.import_smp()
    if backbone not in BACKBONES:
        raise UnetcapError(f"backbone {backbone!r} is not one of {list(BACKBONES)}")
    torch.manual_seed(seed)
    model = smp.Unet(
        pytorch_encoders.ENCODERS[backbone], encoder_weights=None, in_channels=1, classes=1, activation=None
    )
    momentum = KERAS_BN_MOMENTUM if batchnorm_momentum is None else batchnorm_momentum
    for layer in model.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.momentum = 1.0 - float(momentum)
    return model


def kernels(model) -> list:
    """The weights the L2 penalty covers: every convolution's (depthwise ones are grouped
    convolutions) and every linear layer's, as Keras' kernel regularizers."""
    import torch

    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def keras_params(model) -> int:
    """Parameters counted as Keras' count_params does: every weight and the BatchNorm
    statistics (running mean and variance), not PyTorch's batch counters."""
    buffers = (b for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in buffers)


def make_optimizer(name: str, lr: float, model):
    """Adam, SGD or RMSprop with Keras' defaults (see the module's text)."""
    import torch

    params = model.parameters()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=KERAS_EPSILON)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=KERAS_EPSILON)
    return torch.optim.SGD(params, lr=lr)


def autocast(device: str, precision: str):
    """The context a forward pass runs in for `precision`."""
    import torch

    dtype = {"mixed_float16": torch.float16, "mixed_bfloat16": torch.bfloat16}.get(precision)
    return torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def loss_of(logits, y, loss: str, reg: float, weights: list):
    """The training loss of a batch: mean BCE (+ soft Dice for "bce+dice") + the L2 penalty."""
    import torch
    import torch.nn.functional as F

    value = F.binary_cross_entropy_with_logits(logits, y)
    if loss == "bce+dice":
        p = torch.sigmoid(logits)
        value = value + 1.0 - (2.0 * (y * p).sum() + SMOOTH) / (y.sum() + p.sum() + SMOOTH)
    if reg > 0:
        value = value + reg * sum((w * w).sum() for w in weights)
    return value


class TorchNetwork:
    """A run's network on PyTorch, with the interface of `model.Network`: train_step(x, y)
    -> the batch loss, predict(x) -> probabilities, both numpy (n, S, S, 1); the weights and
    the optimizer's state as lists of numpy arrays for checkpoints; the learning rate; the
    generator of dropout; the parameter count; the saved model."""

    backend = "pytorch"
    model_file = "model.pt"

    def __init__(self, backbone: str, image_size: int, lr: float, reg: float, seed: int, settings: Settings):
        import torch

        s = settings
        if s.jit:
            raise UnetcapError("train.jit (XLA) is TensorFlow's: set it to false with train.backend pytorch")
        started = time.perf_counter()
        pytorch_encoders.import_smp()
        self.setup = configure_torch(s.threads, s.gpu_memory_mb)
        self.device = "cuda" if self.setup["gpu"] else "cpu"
        self.seconds = {"import": time.perf_counter() - started}
        started = time.perf_counter()
        self.model = build_model(backbone, seed, s.batchnorm_momentum).to(self.device)
        self.optimizer = make_optimizer(s.optimizer, lr, self.model)
        self.scaler = torch.amp.GradScaler(self.device) if s.precision == "mixed_float16" else None
        self.kernels, self.reg, self.loss, self.precision = kernels(self.model), reg, s.loss, s.precision
        self.image_size = image_size
        self.seconds["build"] = time.perf_counter() - started

    def _tensor(self, x: np.ndarray):
        import torch

        n = len(x)  # one channel: NHWC and NCHW share the memory layout
        return torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(n, 1, *x.shape[1:3])).to(self.device)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        target = self._tensor(y)
        with autocast(self.device, self.precision):
            logits = self.model(self._tensor(x))
        value = loss_of(logits.float(), target, self.loss, self.reg, self.kernels)
        if self.scaler is not None:
            self.scaler.scale(value).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            value.backward()
            self.optimizer.step()
        return float(value.detach())

    def predict(self, x: np.ndarray) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.precision):
            logits = self.model(self._tensor(x))
        p = torch.sigmoid(logits.float()).cpu().numpy()
        return p.reshape(len(x), *p.shape[2:], 1)

    def penalty(self) -> float:
        import torch

        if self.reg <= 0:
            return 0.0
        with torch.no_grad():
            return float(self.reg * sum((w * w).sum() for w in self.kernels))

    def get_weights(self) -> list:
        return [t.detach().cpu().numpy().copy() for t in self.model.state_dict().values()]

    def set_weights(self, weights: list) -> None:
        import torch

        names = list(self.model.state_dict())
        if len(names) != len(weights):
            raise UnetcapError(f"{len(weights)} arrays for a model of {len(names)}")
        self.model.load_state_dict({k: torch.from_numpy(np.asarray(w)) for k, w in zip(names, weights)})

    def optimizer_weights(self) -> list:
        """The optimizer's state (and the loss scaler's) as one array of bytes."""
        import torch

        state = {"optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return [np.frombuffer(buffer.getvalue(), np.uint8).copy()]

    def set_optimizer_weights(self, weights: list) -> None:
        import torch

        state = torch.load(io.BytesIO(np.asarray(weights[0], np.uint8).tobytes()), weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])

    def set_lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(value)

    def seed_dropout(self, seed: int, epoch: int) -> None:
        """Reseed torch's generator (dropout, drop-connect) from (seed, epoch)."""
        import torch

        torch.manual_seed(derived_seed(seed, epoch, 0))

    def count_params(self) -> int:
        return keras_params(self.model)

    def save(self, path) -> None:
        import torch

        torch.save(self.model.state_dict(), path)


def build_network(backbone: str, image_size: int, lr: float, reg: float, seed: int, settings: Settings) -> TorchNetwork:
    """The build step of a run on PyTorch (`model.build_network`'s counterpart)."""
    return TorchNetwork(backbone, image_size, lr, reg, seed, settings)
