"""Precision, XLA and GPU memory as configuration (config `train.precision`, `train.jit`,
`train.gpu_memory_mb`): the settings and their checkpoint key, the float32 output and the
global policy of a mixed build, the loss scale a checkpoint keeps, the GPU memory calls, and
every precision and XLA setting learning at the demo's settings (tests/test_learning.py's
study, steps and bar; float32 without XLA is that test's own run)."""

import numpy as np
import pytest
from test_learning import DEMO, SIZE, demo_like_study  # noqa: F401 (the fixture, shared)
from test_train import run_args, run_in_subprocess
from tiny_store import TF_THREADS, write_tiny_store

from unetcap import UnetcapError, train
from unetcap.train.precision import gpu_memory_plan


@pytest.fixture(scope="module", autouse=True)
def pinned_tensorflow():
    train.configure_tensorflow(TF_THREADS)


def test_precision_and_jit_key_the_checkpoint_and_gpu_memory_does_not():
    defaults = train.Settings.from_config()
    assert (defaults.precision, defaults.jit, defaults.gpu_memory_mb) == ("float32", False, None)
    key = defaults.resume_key()
    assert (key["precision"], key["jit"]) == ("float32", False) and "gpu_memory_mb" not in key
    assert train.Settings.from_config(precision="mixed_bfloat16").resume_key() != key
    assert train.Settings.from_config(jit=True).resume_key() != key
    assert train.Settings.from_config(gpu_memory_mb=2048).resume_key() == key
    with pytest.raises(UnetcapError, match=r"train.gpu_memory_mb: 0 .*train.precision: 'float16'"):
        train.Settings.from_config(precision="float16", gpu_memory_mb=0)


def test_gpu_memory_plan_grows_memory_or_caps_it_never_both():
    gpus = ["GPU:0", "GPU:1"]  # stand-ins: the plan only passes them through
    assert gpu_memory_plan(gpus, None) == [("memory_growth", "GPU:0", True), ("memory_growth", "GPU:1", True)]
    assert gpu_memory_plan(gpus, 3000) == [("memory_limit_mb", "GPU:0", 3000), ("memory_limit_mb", "GPU:1", 3000)]
    assert gpu_memory_plan([], None) == gpu_memory_plan([], 3000) == []


def test_configure_tensorflow_reports_memory_and_switches_determinism_off_only_for_xla():
    from tensorflow.python.framework import config as framework_config

    setup = train.configure_tensorflow(TF_THREADS, gpu_memory_mb=3000)
    assert setup["gpu"] is False  # these tests run on CPU: no GPU memory is set up
    assert (setup["memory_growth"], setup["memory_limit_mb"], setup["deterministic"]) == (False, None, True)
    try:
        assert train.configure_tensorflow(TF_THREADS, jit=True)["deterministic"] is False
        assert not framework_config.is_op_determinism_enabled()
    finally:
        assert train.configure_tensorflow(TF_THREADS)["deterministic"] is True
    assert framework_config.is_op_determinism_enabled()


def test_mixed_build_computes_in_16_bits_outputs_float32_and_leaves_the_policy_at_float32():
    import tensorflow as tf

    model = train.build_model("resnet18", 32, 1e-4, seed=3, precision="mixed_float16")
    assert model.output.dtype == tf.float32 and model.layers[-1].dtype_policy.name == "float32"
    assert model.get_layer("decoder_stage4a_conv").compute_dtype == "float16"
    assert {w.dtype for w in model.trainable_weights} == {tf.float32}
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    plain = train.build_model("resnet18", 32, 1e-4, seed=3)
    assert {layer.dtype_policy.name for layer in plain.layers} == {"float32"}
    assert model.count_params() == plain.count_params()
    with pytest.raises(UnetcapError, match="train.precision 'float16'"):
        train.build_model("resnet18", 32, 1e-4, seed=3, precision="float16")
    assert tf.keras.mixed_precision.global_policy().name == "float32"


def test_float16_scales_the_loss_and_a_checkpoint_keeps_the_scale():
    model = train.build_model("resnet18", 32, 1e-4, seed=3, precision="mixed_float16")
    optimizer = train.make_optimizer("adam", 1e-3, model, precision="mixed_float16")
    inner = len(optimizer.inner_optimizer.get_weights())
    step, predict = train.make_functions(model, optimizer, 32)
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 1), dtype=np.float32)
    y = (x > 0.5).astype(np.float32)
    losses = [float(step(x, y)) for _ in range(3)]
    assert all(np.isfinite(losses)) and predict(x).numpy().dtype == np.float32
    saved = optimizer.get_weights()  # the inner optimizer's, then the loss scale and its good steps
    assert len(saved) == inner + 2
    assert (saved[-2], saved[-1]) == (float(optimizer.loss_scale), int(optimizer.dynamic_counter))
    assert 0 < saved[-2] <= 2.0**15 and 0 <= saved[-1] <= 3
    again = train.make_optimizer("adam", 1e-3, model, precision="mixed_float16")
    again.set_weights([*saved[:-2], np.float32(1024.0), np.int64(7)])
    assert float(again.loss_scale) == 1024.0 and int(again.dynamic_counter) == 7
    # bfloat16 has float32's range: no loss scaling
    assert not hasattr(train.make_optimizer("adam", 1e-3, model, precision="mixed_bfloat16"), "loss_scale")


def test_xla_upsampling_gives_the_resize_ops_values():
    import tensorflow as tf

    from unetcap.train.precision import _nearest_upsampling

    x = tf.constant(np.random.default_rng(1).random((2, 4, 5, 3), dtype=np.float32))
    expected = tf.keras.layers.UpSampling2D(size=2)(x)
    assert np.array_equal(_nearest_upsampling(x, (2, 2)).numpy(), expected.numpy())


# ---------------------------------------------------------------- runs
def demo_run(root, out, **extra) -> dict:
    """tests/test_learning.py's run (resnet18 at the demo's settings) with `extra` settings."""
    settings = {**DEMO["train"], "threads": TF_THREADS, "checkpoint_every": 0, **extra}
    return train.train_run(
        root / "prepared/images.npy",
        root / "prepared/masks.npy",
        root / "prepared/store.json",
        root / f"size{SIZE}.json",
        out / "metrics.json",
        out / "history.csv",
        size=SIZE,
        backbone="resnet18",
        lr=DEMO["lrs"][0],
        reg=DEMO["regs"][0],
        fold=0,
        seed=DEMO["seed"],
        **settings,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision, jit", [("mixed_float16", False), ("mixed_bfloat16", False), ("float32", True)], ids=str
)
def test_each_precision_and_xla_learns_the_myocardium_and_is_recorded(demo_like_study, tmp_path, precision, jit):  # noqa: F811
    from unetcap.metrics import read_metrics

    metrics = demo_run(demo_like_study, tmp_path / "run", precision=precision, jit=jit)
    assert metrics["status"] == "ok"
    assert metrics["train"]["steps"] == DEMO["train"]["steps_per_epoch"] * DEMO["train"]["max_epochs"]
    assert metrics["val"]["dice"] >= 0.5, metrics["val"]
    assert metrics["test"]["dice"] >= 0.5, metrics["test"]
    recorded = read_metrics(tmp_path / "run" / "metrics.json")["train"]
    assert (recorded["precision"], recorded["jit"], recorded["deterministic"]) == (precision, jit, not jit)
    assert (recorded["memory_growth"], recorded["memory_limit_mb"]) == (False, None)


@pytest.mark.slow
def test_checkpoint_of_another_precision_is_not_resumed(tmp_path):
    store = write_tiny_store(tmp_path / "store", image_size=32, per_patient=4)
    run_dir = tmp_path / "run"
    args = run_args(store, run_dir, backbone="resnet18", max_epochs=2)
    killed = run_in_subprocess(args, fault="exit_after_epoch:1")
    assert killed.returncode == train.FAULT_EXIT_CODE, killed.stderr[-2000:]
    assert (run_dir / train.CHECKPOINT_DIR / train.CHECKPOINT_FILE).exists()
    metrics = train.train_run(**run_args(store, run_dir, backbone="resnet18", max_epochs=2, precision="mixed_bfloat16"))
    assert metrics["train"]["resumed"] == 0 and metrics["epochs"] == 2
    assert metrics["train"]["precision"] == "mixed_bfloat16"
