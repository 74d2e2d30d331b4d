"""The benchmark command stays runnable (its numbers are not asserted: they live in the README)."""

import json
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
    assert all(seconds[key] > 0 for key in ("import", "build", "first_step", "step", "first_predict", "predict"))
    # a first call costs more than a steady one (tracing)
    assert seconds["first_step"] > seconds["step"] and seconds["first_predict"] > seconds["predict"]
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
    assert all(p["seconds"] > 0 for p in probes.values())
    unknown = subprocess.run(
        [sys.executable, str(RUN), "--fit-probe", "fitt", "resnet18", "32", "16", "8", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unknown.returncode != 0 and "fitt" in unknown.stderr


def test_unknown_section_is_refused_with_the_choices():
    result = subprocess.run([sys.executable, str(RUN), "prepar"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "prepar" in result.stderr and "prepare" in result.stderr and "memory" in result.stderr
