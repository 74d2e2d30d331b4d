"""TensorFlow and the network: thread pools, the U-Net with its L2 penalty, the optimizer,
and the two compiled functions a run uses (a train step and a predict function).

Fixed cost per run (it dominates small runs): exactly two functions are traced, each once
(any batch size; no autograph), and validation loss and DICE come from predictions in
numpy; the optimizer is Keras' legacy (fused) one with its slots made before tracing;
grappler is off for the train step on CPU. Together this cuts the first step 3-4 times
against compile + fit + evaluate.

Precision (mixed float16 / bfloat16), XLA and the GPU's memory are `precision`'s: this
module builds with them. The two are the only modules that import TensorFlow, and only
inside functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from unetcap import UnetcapError
from unetcap.study import BACKBONES
from unetcap.train.precision import (
    FLOAT32,
    configure_gpu_memory,
    float32_output,
    is_loss_scaled,
    loss_scaled,
    precision_policy,
    xla_upsampling,
)
from unetcap.train.settings import GRAPPLER, LOSSES, Settings, derived_seed

SMOOTH = 1.0  # of the soft Dice loss: 1 - (2 sum(y p) + 1) / (sum(y) + sum(p) + 1)


def configure_tensorflow(
    threads: int, grappler: str = "auto", jit: bool = False, gpu_memory_mb: int | None = None
) -> dict:
    """Pin TensorFlow's intra- and inter-op thread pools to `threads` (the float results on
    CPU depend on it), set up each GPU's memory (`precision.configure_gpu_memory`: growth,
    or a cap of `gpu_memory_mb`), enable op determinism when no GPU is visible and `jit` is
    off, and set grappler (the graph optimizer) for the train step. Returns what is in
    effect: {"gpu", "deterministic", "grappler_train", "grappler_predict" (for
    `make_functions`), "memory_growth", "memory_limit_mb"}.

    grappler "auto": on CPU, off for the train step (it doubles the first step's cost and
    saves nothing later) and on for predictions (its inference rewrites make them ~20 %
    faster); with a GPU, on for both. "on" / "off": for both.

    On a GPU op determinism stays off: TensorFlow has no deterministic GPU kernel for the
    gradient of UpSampling2D (nearest), which every U-Net decoder uses, and raises. GPU runs
    are therefore not bit-reproducible. Under XLA (`jit`) it is off too: XLA has no
    deterministic kernel for max pooling's gradient and refuses to compile it. Thread counts
    and GPU memory can only be set before TensorFlow starts: a process that already runs
    with others raises UnetcapError."""
    import tensorflow as tf

    if grappler not in GRAPPLER:
        raise UnetcapError(f"train.grappler {grappler!r} is not one of {list(GRAPPLER)}")
    threading = tf.config.threading
    for get, put, what in (
        (threading.get_intra_op_parallelism_threads, threading.set_intra_op_parallelism_threads, "intra-op"),
        (threading.get_inter_op_parallelism_threads, threading.set_inter_op_parallelism_threads, "inter-op"),
    ):
        if get() != threads:
            try:
                put(threads)
            except RuntimeError:
                raise UnetcapError(
                    f"TensorFlow already runs with {get()} {what} threads in this "
                    f"process; cannot pin {threads} (start a new process)"
                ) from None
    memory = configure_gpu_memory(gpu_memory_mb)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    deterministic = not gpu and not jit
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:  # switch off an earlier build's (TensorFlow has no public call for it)
        from tensorflow.python.framework import config as framework_config

        if framework_config.is_op_determinism_enabled():
            framework_config.disable_op_determinism()
    train_on = grappler == "on" or (grappler == "auto" and gpu)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not train_on})
    return {
        "gpu": gpu,
        "deterministic": deterministic,
        "grappler_train": train_on,
        "grappler_predict": grappler != "off",
        **memory,
    }


def soft_dice_loss(y, p):
    """1 - (2 sum(y p) + SMOOTH) / (sum(y) + sum(p) + SMOOTH) over every pixel of the batch
    (one Dice per batch, as nnU-Net's batch Dice: images without myocardium add no term of
    their own)."""
    import tensorflow as tf

    intersection = tf.reduce_sum(y * p)
    return 1.0 - (2.0 * intersection + SMOOTH) / (tf.reduce_sum(y) + tf.reduce_sum(p) + SMOOTH)


def import_sm():
    import segmentation_models as sm  # needs SM_FRAMEWORK=tf.keras, set by `import unetcap`

    return sm


# kernel attribute of a layer -> the attribute of its regularizer
KERNELS = {
    "kernel": "kernel_regularizer",
    "depthwise_kernel": "depthwise_regularizer",
    "pointwise_kernel": "pointwise_regularizer",
}


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


def build_model(
    backbone: str,
    image_size: int,
    reg: float,
    seed: int,
    batchnorm_momentum: float | None = None,
    precision: str = FLOAT32,
    jit: bool = False,
):
    """The run's U-Net with its L2 penalty, initial weights drawn from `seed`. Dropout layers
    get their own random generators, reseeded per epoch by `seed_dropout`. With
    `batchnorm_momentum`, every BatchNormalization layer's moving statistics follow the
    batches at that momentum instead of the layers' own (0.99, Keras' default; the paper's).
    `precision`: the layers' dtype policy, the output sigmoid float32 whatever it is
    (`precision`); `jit`: upsampling that XLA can differentiate (`precision.xla_upsampling`)."""
    import tensorflow as tf

    if backbone not in BACKBONES:
        raise UnetcapError(f"backbone {backbone!r} is not one of {list(BACKBONES)}")
    sm = import_sm()
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    # Dropout draws from tf.random.Generator objects (state in a variable) instead of
    # stateful ops whose hidden state a resumed process could not restore.
    tf.keras.backend.experimental.enable_tf_random_generator()
    with precision_policy(precision):
        model = sm.Unet(
            backbone, encoder_weights=None, input_shape=(image_size, image_size, 1), classes=1, activation="sigmoid"
        )
        if precision != FLOAT32:
            model = float32_output(model)
    if jit:
        xla_upsampling(_all_layers(model))
    add_l2(model, reg)
    if batchnorm_momentum is not None:
        set_batchnorm_momentum(model, batchnorm_momentum)
    for layer in _dropout_layers(model):
        layer._random_generator._maybe_init()  # create the generator outside any tf.function
    return model


def set_batchnorm_momentum(model, momentum: float) -> int:
    """Set the momentum of every BatchNormalization layer of `model` (before any function is
    traced: it is read when the graph is built). Returns the number of layers."""
    import tensorflow as tf

    layers = [layer for layer in _all_layers(model) if isinstance(layer, tf.keras.layers.BatchNormalization)]
    for layer in layers:
        layer.momentum = float(momentum)
    return len(layers)


def _dropout_layers(model) -> list:
    return [
        layer
        for layer in _all_layers(model)
        if getattr(getattr(layer, "_random_generator", None), "_rng_type", None) is not None
        and getattr(layer, "rate", 0)
    ]


def seed_dropout(model, seed: int, epoch: int) -> None:
    """Reseed every dropout layer's generator from (seed, epoch, layer number)."""
    for i, layer in enumerate(_dropout_layers(model)):
        generator = layer._random_generator._generator
        if generator is None:
            raise UnetcapError(f"dropout layer {layer.name} has no random generator (tf-keras changed?)")
        generator.reset_from_seed(derived_seed(seed, epoch, i))


def penalty(model) -> float:
    """The L2 penalty of the current weights (0 without one)."""
    import tensorflow as tf

    return float(tf.add_n(model.losses)) if model.losses else 0.0


def make_optimizer(name: str, lr: float, model, precision: str = FLOAT32):
    """A Keras optimizer with its slots already created (so the train step traces once);
    for mixed_float16, wrapped for dynamic loss scaling (`precision.loss_scaled`)."""
    import tensorflow as tf

    legacy = tf.keras.optimizers.legacy  # fused kernels: a third of the new optimizers' graph
    optimizer = {"adam": legacy.Adam, "sgd": legacy.SGD, "rmsprop": legacy.RMSprop}[name](learning_rate=lr)
    optimizer._create_all_weights(model.trainable_variables)
    return loss_scaled(optimizer, precision)


def make_functions(
    model, optimizer, image_size: int, grappler_predict: bool | None = None, loss: str = "bce", jit: bool = False
):
    """(train_step, predict): one compiled function each, for any batch size. train_step(x, y)
    applies one update and returns the batch loss: mean BCE (+ the soft Dice loss of the
    batch for loss "bce+dice") + the L2 penalty; predict(x) gives p. With a loss-scaling
    optimizer (mixed_float16) the step differentiates the scaled loss and unscales the
    gradients. `jit`: both functions compiled by XLA.
    `grappler_predict` (if given) switches grappler on or off around every predict call,
    whatever it is for the train step: each function is optimised once, under its setting."""
    import tensorflow as tf

    if loss not in LOSSES:
        raise UnetcapError(f"train.loss {loss!r} is not one of {list(LOSSES)}")
    spec = tf.TensorSpec((None, image_size, image_size, 1), tf.float32)
    bce = tf.keras.losses.BinaryCrossentropy()
    variables = model.trainable_variables
    scaled = is_loss_scaled(optimizer)

    @tf.function(input_signature=[spec, spec], autograph=False, jit_compile=jit)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            value = bce(y, p)
            if loss == "bce+dice":
                value = value + soft_dice_loss(y, p)
            if model.losses:
                value = value + tf.add_n(model.losses)
            target = optimizer.get_scaled_loss(value) if scaled else value
        gradients = tape.gradient(target, variables)
        if scaled:
            gradients = optimizer.get_unscaled_gradients(gradients)
        optimizer.apply_gradients(zip(gradients, variables))
        return value

    @tf.function(input_signature=[spec], autograph=False, jit_compile=jit)
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


@dataclass
class Network:
    """A run's network, ready to train: the model, its optimizer, the two compiled functions,
    how TensorFlow was set up (`configure_tensorflow`) and the seconds the set-up took
    (`import`: TensorFlow and segmentation-models; `build`: model, optimizer, functions).

    Its methods are what the loop and the trainer use, the same for every backend
    (`pytorch.TorchNetwork` has them too): train_step(x, y) -> the batch loss; predict(x)
    -> probabilities, numpy (n, S, S, 1); the weights and the optimizer's state as lists of
    arrays; the learning rate; the dropout generators; the parameter count; the saved model."""

    model: object
    optimizer: object
    train_step: object
    compiled_predict: object
    setup: dict
    seconds: dict
    backend = "tensorflow"
    model_file = "model.keras"

    def predict(self, x):
        return self.compiled_predict(x).numpy()

    def penalty(self) -> float:
        return penalty(self.model)

    def get_weights(self) -> list:
        return self.model.get_weights()

    def set_weights(self, weights: list) -> None:
        self.model.set_weights(weights)

    def optimizer_weights(self) -> list:
        return self.optimizer.get_weights()

    def set_optimizer_weights(self, weights: list) -> None:
        self.optimizer.set_weights(weights)

    def set_lr(self, value: float) -> None:
        import tensorflow as tf

        tf.keras.backend.set_value(self.optimizer.learning_rate, value)

    def seed_dropout(self, seed: int, epoch: int) -> None:
        seed_dropout(self.model, seed, epoch)

    def count_params(self) -> int:
        return int(self.model.count_params())

    def save(self, path) -> None:
        self.model.save(path)


def build_network(backbone: str, image_size: int, lr: float, reg: float, seed: int, settings: Settings) -> Network:
    """The build step of a run (the trainer's, and the benchmarks'): TensorFlow configured
    for `settings` (threads, grappler, XLA, GPU memory), the U-Net of `build_model` at
    `settings.precision`, the optimizer and the compiled functions for `settings.loss`."""
    s = settings
    started = time.perf_counter()
    import_sm()
    setup = configure_tensorflow(s.threads, s.grappler, s.jit, s.gpu_memory_mb)
    seconds = {"import": time.perf_counter() - started}
    started = time.perf_counter()
    model = build_model(backbone, image_size, reg, seed, s.batchnorm_momentum, s.precision, s.jit)
    optimizer = make_optimizer(s.optimizer, lr, model, s.precision)
    train_step, predict = make_functions(
        model, optimizer, image_size, setup["grappler_predict"], loss=s.loss, jit=s.jit
    )
    seconds["build"] = time.perf_counter() - started
    return Network(model, optimizer, train_step, predict, setup, seconds)
