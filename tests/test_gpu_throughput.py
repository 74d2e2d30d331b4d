"""The GPU throughput script (benchmarks/gpu_throughput.py), run on the CPU at a tiny size:
it builds the study's U-Nets from the file it carries to a GPU node (no unetcap package),
writes one row per setting and per number of processes sharing the device, and the cost
planner reads the rows of the config's precision from it. No measured time is asserted."""

import csv
import subprocess
import sys

from snakemake_run import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import plan  # noqa: E402  benchmarks/plan.py

SCRIPT = ROOT / "benchmarks" / "gpu_throughput.py"


def test_the_script_measures_every_setting_and_the_planner_reads_its_table(tmp_path):
    out = tmp_path / "steps.csv"
    args = ["--device", "cpu", "--sizes", "32", "--steps", "1", "--warmup", "0", "--encoders", "resnet18"]
    args += ["--processes", "1", "2", "--start-delay", "5", "--out", str(out)]
    # with -I the unetcap package cannot be imported: the script must not need it
    done = subprocess.run([sys.executable, "-I", SCRIPT, *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    settings = {(r["precision"], r["channels_last"], r["concurrency"]) for r in rows}
    assert settings == {
        ("float32", "False", "1"),
        ("float32", "True", "1"),
        ("mixed_bfloat16", "False", "1"),
        ("mixed_bfloat16", "True", "1"),
        ("float32", "False", "2"),
    }
    assert all(float(r["seconds_per_step"]) > 0 and r["device"] == "CPU" for r in rows)
    read = plan.read_steps_table(out, "float32")
    assert sorted(r["concurrency"] for r in read) == [1, 2] and {r["channels_last"] for r in read} == {"False"}
    assert [r["precision"] for r in plan.read_steps_table(out, "mixed_bfloat16")] == ["mixed_bfloat16"]
