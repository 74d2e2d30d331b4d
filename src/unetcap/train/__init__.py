"""Training runs (the study's stage 4): a U-Net trained from scratch on one fold of one
dataset size, scored on its validation fold and on the subset's test set.

The model (backend tensorflow, the default; `pytorch` describes the other) is
`segmentation_models.Unet(backbone, encoder_weights=None, input_shape=(S, S, 1),
classes=1, activation="sigmoid")` with an L2 penalty `reg * sum(w**2)` on every convolution,
depthwise-convolution and dense kernel (segmentation-models' own set_regularization misses
EfficientNet's depthwise kernels). Loss: mean binary cross-entropy (plus a soft Dice term
with `loss: bce+dice`) + the penalty. Training stops after `max_epochs`, or early when the
validation loss has not improved for `patience` epochs; the weights of the best epoch are
restored in every case. As in Keras, the validation loss that early stopping watches
includes the penalty; the reported BCE does not.

Determinism: the run's seed is derived from the config seed and the run's wildcards
(`run_seed`); the initial weights follow it, each epoch's batches, augmentation and dropout
masks follow (seed, epoch), and TensorFlow runs with pinned thread counts and (on CPU) op
determinism. On CPU, the same run with the same thread count gives bit-identical metrics,
also when it was interrupted and resumed from its checkpoint.

The parts, each a module: `settings` (what a run may be told, with defaults), `data` (the
run's arrays, an epoch's batches, augmentation), `model` (TensorFlow, the U-Net, the loss
and the compiled functions, and `Network`, the interface the loop uses), `precision` (mixed
precision, XLA and the GPU's memory, as the settings ask), `pytorch` (the same network on
PyTorch, `train.backend: pytorch`), `network` (`build_network`, the build step for the
configured backend, which the benchmarks share), `loop` (epochs, validation, early
stopping, and the `Hook`s that act at each epoch's start and end), `checkpoint`, `faults`
(injected for tests, as a hook), `run` (the `Trainer`: one run's steps in the order they
happen, build, resume, fit, score, record, save).
"""

from unetcap.train.checkpoint import CHECKPOINT_DIR, CHECKPOINT_FILE
from unetcap.train.data import RunData, augment_batch, epoch_batches, load_run_data, segmentation_rows
from unetcap.train.faults import FAULT_ENV, FAULT_EXIT_CODE, FaultHook, fault_epochs, faults
from unetcap.train.loop import Hook, score, train_epoch
from unetcap.train.model import (
    Network,
    add_l2,
    build_model,
    configure_tensorflow,
    import_sm,
    kernel_variables,
    make_functions,
    make_optimizer,
    penalty,
    seed_dropout,
    soft_dice_loss,
)
from unetcap.train.network import BUILDERS, VERSIONS, build_network
from unetcap.train.run import Trainer, train_run
from unetcap.train.settings import Augment, Settings, run_seed

__all__ = [
    "BUILDERS",
    "VERSIONS",
    "CHECKPOINT_DIR",
    "CHECKPOINT_FILE",
    "FAULT_ENV",
    "FAULT_EXIT_CODE",
    "Augment",
    "FaultHook",
    "Hook",
    "Network",
    "RunData",
    "Settings",
    "Trainer",
    "add_l2",
    "augment_batch",
    "build_model",
    "build_network",
    "configure_tensorflow",
    "epoch_batches",
    "fault_epochs",
    "faults",
    "import_sm",
    "kernel_variables",
    "load_run_data",
    "make_functions",
    "make_optimizer",
    "penalty",
    "run_seed",
    "score",
    "seed_dropout",
    "segmentation_rows",
    "soft_dice_loss",
    "train_epoch",
    "train_run",
]
