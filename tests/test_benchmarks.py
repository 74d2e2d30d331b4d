"""The benchmark command stays runnable (its numbers are not asserted: they live in the README)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"


def test_probe_measures_one_encoder_in_its_own_process():
    result = subprocess.run(
        [sys.executable, str(RUN), "--probe", "resnet18", "32", "2", "1"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    seconds = probe["seconds"]
    # every phase measured, each a positive finite number of seconds (their sizes and order
    # are the machine's: not asserted); the fixed cost is derived from them
    phases = ("import", "build", "first_step", "step", "first_predict", "predict")
    assert set(seconds) == {*phases, "fixed"}, seconds
    assert all(isinstance(seconds[key], float) and math.isfinite(seconds[key]) for key in seconds), seconds
    assert all(seconds[key] > 0 for key in phases), seconds
    fixed = sum(seconds[k] for k in ("import", "build", "first_step", "first_predict"))
    assert seconds["fixed"] == pytest.approx(fixed - seconds["step"] - seconds["predict"])
    assert probe["peak_mb"] > 100  # TensorFlow alone takes more


@pytest.mark.slow
def test_fit_section_runs_the_loop_and_model_fit_at_the_same_settings():
    """Both contenders train the same model on the same images: as many epochs and optimizer
    steps (16 images in batches of 8, 2 epochs: 4 steps), each in its own process."""
    probes = {}
    for contender in ("loop", "keras"):
        result = subprocess.run(
            [sys.executable, str(RUN), "--fit-probe", contender, "resnet18", "32", "16", "8", "2"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        probes[contender] = json.loads(result.stdout.strip().splitlines()[-1])
    assert probes["loop"]["epochs"] == probes["keras"]["epochs"] == 2, probes
    assert probes["loop"]["steps"] == probes["keras"]["steps"] == 4, probes
    assert all(math.isfinite(p["seconds"]) and p["seconds"] > 0 for p in probes.values())
    unknown = subprocess.run(
        [sys.executable, str(RUN), "--fit-probe", "fitt", "resnet18", "32", "16", "8", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unknown.returncode != 0 and "fitt" in unknown.stderr


@pytest.mark.slow
def test_precision_section_writes_one_row_per_encoder_and_setting(tmp_path):
    """The precision section with tiny arguments (one encoder, two settings without XLA, one
    timed step): its table has a row per setting, the baseline's ratio is 1."""
    import csv

    out = tmp_path / "precision_cpu.csv"
    result = subprocess.run(
        [sys.executable, str(RUN), "--precision-section", "resnet18", "float32:0,mixed_bfloat16:0", "0", "1", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["encoder", "precision", "jit", "first_step_s", "ms_per_step", "ratio_to_float32"]
    assert [(r["encoder"], r["precision"], r["jit"]) for r in rows] == [
        ("resnet18", "float32", "False"),
        ("resnet18", "mixed_bfloat16", "False"),
    ]
    assert float(rows[0]["ratio_to_float32"]) == 1.0
    assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for r in rows for k in ("first_step_s", "ms_per_step"))


def test_unknown_section_is_refused_with_the_choices():
    result = subprocess.run([sys.executable, str(RUN), "prepar"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "prepar" in result.stderr and "prepare" in result.stderr and "memory" in result.stderr
