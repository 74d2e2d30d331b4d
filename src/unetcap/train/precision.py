"""What a run asks of TensorFlow besides the network itself: its precision (config
`train.precision`, Keras mixed precision), XLA compilation (`train.jit`) and the memory it
takes on each GPU (`train.gpu_memory_mb`). `model` builds the network and its functions
with these; TensorFlow is imported only inside functions, as there.

Mixed precision: the layers compute in float16 or bfloat16 with float32 weights; the output
sigmoid is float32, so the loss, the metrics and every number a run writes stay float32.
float16 needs loss scaling (its smallest normal number is 6e-5: small gradients would
vanish), bfloat16 has float32's range and does not. The global policy is set for one build
only and reset to float32 afterwards, so a later build in the process starts from float32.
"""

from __future__ import annotations

import contextlib
import functools

from unetcap import UnetcapError
from unetcap.train.settings import PRECISIONS

FLOAT32 = "float32"


def gpu_memory_plan(gpus: list, gpu_memory_mb: int | None) -> list[tuple[str, object, object]]:
    """The calls that set up the memory of each visible GPU, as (what, device, value):
    ("memory_limit_mb", gpu, gpu_memory_mb) with a cap (one logical device with that
    limit), else ("memory_growth", gpu, True). TensorFlow refuses memory growth on a device
    with a logical device configuration, so with a cap the cap applies alone."""
    if gpu_memory_mb is None:
        return [("memory_growth", gpu, True) for gpu in gpus]
    return [("memory_limit_mb", gpu, int(gpu_memory_mb)) for gpu in gpus]


def configure_gpu_memory(gpu_memory_mb: int | None) -> dict:
    """Apply `gpu_memory_plan` to the visible GPUs (before anything allocates on them).
    Returns what is in effect: {"memory_growth": bool, "memory_limit_mb": int or None}
    (False and None without a GPU). A process whose GPUs already run with other settings
    raises UnetcapError: they can only be set before TensorFlow first uses a GPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for what, gpu, value in gpu_memory_plan(gpus, gpu_memory_mb):
        try:
            if what == "memory_growth":
                tf.config.experimental.set_memory_growth(gpu, value)
            else:
                config = [tf.config.LogicalDeviceConfiguration(memory_limit=value)]
                tf.config.set_logical_device_configuration(gpu, config)
        except (RuntimeError, ValueError) as err:
            raise UnetcapError(
                f"cannot set {what} {value} on {gpu.name}: TensorFlow already runs on it with other "
                f"settings in this process ({err}); start a new process for train.gpu_memory_mb "
                f"{gpu_memory_mb}"
            ) from None
    capped = bool(gpus) and gpu_memory_mb is not None
    return {"memory_growth": bool(gpus) and not capped, "memory_limit_mb": int(gpu_memory_mb) if capped else None}


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise UnetcapError(f"train.precision {precision!r} is not one of {list(PRECISIONS)}")


@contextlib.contextmanager
def precision_policy(precision: str):
    """Keras' global dtype policy set to `precision` for the layers built inside, and reset
    to float32 on the way out (also on an error)."""
    import tensorflow as tf

    check_precision(precision)
    tf.keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(FLOAT32)


def float32_output(model):
    """`model` (built under a mixed policy) with its final activation computed in float32:
    the same layers and weights, the last one replaced by a float32 copy of itself. Without
    it the sigmoid's output would be float16 (probabilities rounded to 1e-3, the loss's
    log(p) inaccurate near 0 and 1)."""
    import tensorflow as tf

    last = model.layers[-1]
    if not isinstance(last, tf.keras.layers.Activation):
        raise UnetcapError(f"the model's last layer {last.name} is not its activation (segmentation-models changed?)")
    config = {**last.get_config(), "dtype": FLOAT32}
    output = tf.keras.layers.Activation.from_config(config)(last.input)
    return tf.keras.Model(model.inputs, output, name=model.name)


def _nearest_upsampling(x, size):
    """UpSampling2D's nearest interpolation (channels last): every pixel repeated size[0] x
    size[1] times. The same values as the resize op, but from broadcast and reshape, whose
    gradients XLA compiles (XLA has no kernel for ResizeNearestNeighborGrad)."""
    import tensorflow as tf

    dynamic = tf.shape(x)
    b, h, w, c = (x.shape[i] if x.shape[i] is not None else dynamic[i] for i in range(4))
    x = tf.broadcast_to(x[:, :, None, :, None, :], [b, h, size[0], w, size[1], c])
    return tf.reshape(x, [b, h * size[0], w * size[1], c])


def xla_upsampling(layers) -> int:
    """Make every nearest-neighbour UpSampling2D of `layers` compute as `_nearest_upsampling`
    (the U-Net decoder's, so that XLA can compile the train step). Returns how many."""
    import tensorflow as tf

    count = 0
    for layer in layers:
        if isinstance(layer, tf.keras.layers.UpSampling2D):
            if layer.interpolation != "nearest" or layer.data_format != "channels_last":
                raise UnetcapError(
                    f"train.jit: cannot compile {layer.name} ({layer.interpolation}, {layer.data_format})"
                )
            layer.call = functools.partial(_nearest_upsampling, size=layer.size)
            count += 1
    return count


@functools.cache
def _checkpointed_loss_scale_optimizer():
    """tf-keras' LossScaleOptimizer (the one for legacy optimizers) whose get_weights and
    set_weights hold its loss scale and good-step counter too, after the inner optimizer's
    weights: a checkpoint then resumes the loss scale where it was."""
    from tf_keras.src.mixed_precision.loss_scale_optimizer import LossScaleOptimizer

    class CheckpointedLossScaleOptimizer(LossScaleOptimizer):
        def _scale_state(self) -> list:
            return [self._loss_scale.current_loss_scale, self._loss_scale.counter]

        def get_weights(self):
            return [*super().get_weights(), *(v.numpy() for v in self._scale_state())]

        def set_weights(self, weights):
            state = self._scale_state()
            super().set_weights(weights[: len(weights) - len(state)])
            for variable, value in zip(state, weights[len(weights) - len(state) :]):
                variable.assign(value)

    return CheckpointedLossScaleOptimizer


def loss_scaled(optimizer, precision: str):
    """`optimizer` wrapped for dynamic loss scaling when `precision` is mixed_float16 (the
    train step then scales the loss and unscales the gradients), else itself."""
    if precision != "mixed_float16":
        return optimizer
    return _checkpointed_loss_scale_optimizer()(optimizer)


def is_loss_scaled(optimizer) -> bool:
    return hasattr(optimizer, "get_scaled_loss")
