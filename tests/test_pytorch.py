"""The PyTorch backend (config `train.backend: pytorch`, unetcap.train.pytorch): the same
U-Nets as segmentation-models' (parameter counts), the same losses and BatchNorm momentum,
a run that is the same twice and resumes bit-identical after a hard kill, writes the same
metrics.json fields as a TensorFlow run, and learns at the demo's settings."""

import numpy as np
import pandas as pd
import pytest
from test_learning import DEMO, SIZE, demo_like_study  # noqa: F401 (the fixture, shared)
from test_precision import demo_run
from test_train import comparable, pinned_tensorflow, run_args, run_in_subprocess, store  # noqa: F401 (fixtures, shared)
from tiny_store import TF_THREADS as THREADS

from unetcap import UnetcapError, train
from unetcap.study import BACKBONES
from unetcap.train import pytorch

# Parameters (Keras' count: BatchNorm statistics included) of a PyTorch U-Net against the
# TensorFlow one of the same encoder at one input channel: equal for the VGGs and the
# EfficientNets (unetcap.train.pytorch_encoders gives smp's EfficientNet segmentation-models'
# features); the ResNets differ by at most this share, because segmentation-models' ResNets
# (classification_models) are pre-activation ResNets, BatchNorm before each convolution,
# and torchvision's, which smp uses, put it after: BatchNorm layers over other channel
# counts, and in resnet18 one 1x1 shortcut convolution that only segmentation-models' has
# (resnet18: 771 fewer in PyTorch, resnet50: 15,101 more).
PARAMS_TOLERANCE = {"resnet18": 1e-4, "resnet50": 1e-3}


def torch_args(tiny_store, run_dir, **settings):
    return run_args(tiny_store, run_dir, backend="pytorch", **settings)


@pytest.fixture(scope="module")
def reference(store, tmp_path_factory):  # noqa: F811
    """An uninterrupted efficientnetb0 run on PyTorch (drop-connect draws), 4 epochs."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    return train.train_run(**torch_args(store, run_dir)), run_dir


def test_backend_is_a_setting_that_keys_the_checkpoint_and_jit_is_refused():
    default = train.Settings.from_config()
    assert default.backend == "tensorflow"
    chosen = train.Settings.from_config(backend="pytorch", threads=THREADS)
    assert chosen.resume_key() != default.resume_key() and chosen.resume_key()["backend"] == "pytorch"
    with pytest.raises(UnetcapError, match="train.backend: 'jax'"):
        train.Settings.from_config(backend="jax")
    with pytest.raises(UnetcapError, match="train.jit"):
        train.build_network("resnet18", 32, 1e-3, 0.0, 1, train.Settings.from_config(backend="pytorch", jit=True))


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_a_pytorch_unet_has_the_parameters_of_the_tensorflow_one(backbone):
    tf_params = train.build_model(backbone, 32, 0.0, seed=1).count_params()
    torch_params = pytorch.keras_params(pytorch.build_model(backbone, seed=1))
    assert abs(torch_params / tf_params - 1) <= PARAMS_TOLERANCE.get(backbone, 0), (backbone, tf_params, torch_params)


def test_losses_are_the_keras_ones_on_the_same_predictions():
    import tensorflow as tf
    import torch

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 1, 8, 8)).astype(np.float32)
    y = (rng.random((4, 1, 8, 8)) > 0.6).astype(np.float32)
    p = tf.sigmoid(logits)
    bce = float(tf.keras.losses.BinaryCrossentropy()(y, p))
    for loss, want in (("bce", bce), ("bce+dice", bce + float(train.soft_dice_loss(y, p)))):
        got = float(pytorch.loss_of(torch.from_numpy(logits), torch.from_numpy(y), loss, 0.0, []))
        assert got == pytest.approx(want, rel=1e-5), loss
    weights = [torch.full((3, 3), 2.0)]
    assert float(pytorch.loss_of(torch.zeros(1), torch.zeros(1), "bce", 0.1, weights)) == pytest.approx(
        np.log(2) + 0.1 * 9 * 4
    )


@pytest.mark.parametrize("keras, torch_momentum", [(None, 0.01), (0.9, 0.1)])
def test_batchnorm_momentum_is_keras_in_pytorchs_convention(keras, torch_momentum):
    import torch

    model = pytorch.build_model("resnet18", seed=1, batchnorm_momentum=keras)
    momenta = [m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(momenta) > 10 and momenta == pytest.approx([torch_momentum] * len(momenta))


@pytest.mark.parametrize("backbone", ["efficientnetb0", "vgg16"])
def test_the_penalty_covers_the_kernels_keras_regularizes_depthwise_included(backbone):
    """The L2 penalty's weights are those of TensorFlow's U-Net (unetcap.train.add_l2): as
    many kernels, as many numbers. (The ResNets differ by one 1x1 shortcut convolution that
    segmentation-models' ResNet18 has in its first stage.)"""
    import torch

    model = pytorch.build_model(backbone, seed=1)
    weights = pytorch.kernels(model)
    keras = [v for _, _, v in train.kernel_variables(train.build_model(backbone, 32, 0.0, seed=1))]
    assert len(weights) == len(keras)
    assert sum(w.numel() for w in weights) == sum(int(v.shape.num_elements()) for v in keras)
    if backbone == "efficientnetb0":  # its depthwise convolutions are in
        penalised = {id(w) for w in weights}
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert any(m.groups > 1 and id(m.weight) in penalised for m in convs)


@pytest.mark.slow
def test_a_pytorch_run_writes_what_a_tensorflow_run_writes(store, reference, tmp_path):  # noqa: F811
    metrics, run_dir = reference
    assert metrics["status"] == "ok" and metrics["epochs"] == 4
    assert metrics["train"]["backend"] == "pytorch" and metrics["train"]["deterministic"] is True
    assert (
        metrics["provenance"]["versions"]["torch"] and metrics["provenance"]["versions"]["segmentation_models_pytorch"]
    )
    tensorflow = train.train_run(**run_args(store, tmp_path / "tf", max_epochs=1))
    assert tensorflow["train"]["backend"] == "tensorflow"

    def fields(obj, prefix=""):
        if not isinstance(obj, dict) or prefix.endswith("versions"):
            return {prefix}
        return set().union(*(fields(v, f"{prefix}.{k}") for k, v in obj.items()))

    assert fields(metrics) == fields(tensorflow)
    assert list(pd.read_csv(run_dir / "history.csv").columns) == list(pd.read_csv(tmp_path / "tf/history.csv").columns)
    assert sorted(p.name for p in run_dir.iterdir()) == ["history.csv", "metrics.json"]


@pytest.mark.slow
def test_a_pytorch_run_is_the_same_twice_and_resumes_as_if_uninterrupted(store, reference, tmp_path):  # noqa: F811
    again = train.train_run(**torch_args(store, tmp_path / "again"))
    assert comparable(again) == comparable(reference[0])
    run_dir = tmp_path / "run"
    args = torch_args(store, run_dir)
    killed = run_in_subprocess(args, fault="exit_after_epoch:2")
    assert killed.returncode == train.FAULT_EXIT_CODE, killed.stderr[-2000:]
    resumed = train.train_run(**args)
    assert resumed["train"]["resumed"] == 1
    assert comparable(resumed) == comparable(reference[0])
    pd.testing.assert_frame_equal(
        pd.read_csv(run_dir / "history.csv").drop(columns="seconds"),
        pd.read_csv(reference[1] / "history.csv").drop(columns="seconds"),
    )


@pytest.mark.slow
def test_a_diverging_pytorch_run_keeps_its_initial_weights(store, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(train.FAULT_ENV, "diverge_at_epoch:1")
    metrics = train.train_run(**torch_args(store, tmp_path / "run", backbone="resnet18", max_epochs=2))
    assert metrics["status"] == "diverged" and metrics["best_epoch"] == 0 and metrics["epochs"] == 1


@pytest.mark.slow
def test_pytorch_at_the_demos_settings_learns_the_myocardium(demo_like_study, tmp_path):  # noqa: F811
    metrics = demo_run(demo_like_study, tmp_path / "run", backend="pytorch", save_model=True)
    assert metrics["status"] == "ok" and metrics["train"]["backend"] == "pytorch"
    assert metrics["train"]["steps"] == DEMO["train"]["steps_per_epoch"] * DEMO["train"]["max_epochs"]
    assert metrics["val"]["dice"] >= 0.5, metrics["val"]
    assert metrics["test"]["dice"] >= 0.5, metrics["test"]
    assert (tmp_path / "run" / "model.pt").stat().st_size > 4 * metrics["params"] * 0.9
