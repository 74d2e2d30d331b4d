"""The cost planner (benchmarks/plan.py): its counts against independent ones (the design's
split table, Snakemake's dry run), a plan from a steps table (nothing timed here) and the
packing arithmetic on a hand example. No measured time is asserted: those are the machine's."""

import subprocess
import sys

import pytest
from snakemake_run import ROOT, copy_workflow, job_counts, snakemake

sys.path.insert(0, str(ROOT / "benchmarks"))
import plan  # noqa: E402  benchmarks/plan.py

PLAN = ROOT / "benchmarks" / "plan.py"

# docs/design.md §5, the paper's sizes on 100 patients: development patients x images; 5
# folds of equal patients, so a run trains on 4/5 of the development images
PAPER_DEV = {200: 5 * 32, 500: 5 * 80, 1000: 10 * 80, 2500: 20 * 100, 5000: 40 * 100, 10000: 80 * 100}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def dry_run_train_jobs(workdir, *args) -> tuple[int, set[str]]:
    """Snakemake's own count of the train jobs, and their run folders, from a dry run."""
    result = snakemake(workdir, "-n", *args)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    folders = {
        word.rsplit("/metrics.json", 1)[0].split("/runs/", 1)[1]
        for word in result.stdout.replace(",", " ").split()
        if word.endswith("/metrics.json") and "/runs/" in word
    }
    return job_counts(result.stdout).get("train", 0), folders


def run_folder(run: plan.Run) -> str:
    return f"size{run.size}/{run.backbone}/lr{float(run.lr)!r}_reg{float(run.reg)!r}/fold{run.fold}"


def test_paper_config_plans_1620_runs_and_the_schedules_bounds(workdir, tmp_path):
    config = plan.load_config([])
    runs = plan.plan_runs(config)
    assert config["study"] == "paper" and len(runs) == 6 * 6 * 3 * 3 * 5 == 1620
    lvsc = tmp_path / "lvsc"  # 100 empty patient folders: enough for the DAG
    for p in range(1, 101):
        (lvsc / f"DET{p:05d}01").mkdir(parents=True)
    count, folders = dry_run_train_jobs(workdir, "--config", f"cohort={{source: lvsc, path: {lvsc}}}")
    assert count == len(runs) and folders == {run_folder(r) for r in runs}
    schedule = plan.Schedule.from_config(config["train"])
    # patience 5 from epoch 1: the earliest stop is after epoch 6; max_epochs 50 caps it
    assert schedule.epoch_bounds() == (6, 50)
    for run in runs:
        dev = PAPER_DEV[run.size]
        assert (run.n_train, run.n_val, run.n_test) == (dev * 4 // 5, dev // 5, run.size - dev)
        assert run.n_holdout == 20 * 100  # round(0.2 x 100) holdout patients x 100 images
        assert schedule.steps_per_epoch_of(run.n_train) == -(-dev * 4 // 5 // 8)  # one pass at batch 8
    assert schedule.steps_per_epoch_of(PAPER_DEV[200] * 4 // 5) == 16
    assert schedule.steps_per_epoch_of(PAPER_DEV[10000] * 4 // 5) == 800


def test_demo_plans_24_runs_of_100_steps_as_snakemake_lists_them(workdir):
    config = plan.load_config([ROOT / "config" / "demo.yaml"])
    runs = plan.plan_runs(config)
    assert config["study"] == "demo" and len(runs) == 24
    count, folders = dry_run_train_jobs(workdir, "--configfile", "config/demo.yaml")
    assert count == 24 and folders == {run_folder(r) for r in runs}
    schedule = plan.Schedule.from_config(config["train"])
    assert schedule.epoch_bounds() == (5, 5)  # max_epochs 5 caps patience 5
    assert {5 * schedule.steps_per_epoch_of(r.n_train) for r in runs} == {100}
    assert {(r.size, r.n_train + r.n_val, r.n_test) for r in runs} == {(40, 32, 8), (400, 320, 80)}


def test_config_files_are_laid_over_as_snakemake_lays_them():
    base = {"train": {"max_epochs": 50, "patience": 5}, "sizes": [1, 2], "seed": 1}
    over = {"train": {"max_epochs": 5}, "sizes": [3]}
    assert plan.overlay(base, over) == {"train": {"max_epochs": 5, "patience": 5}, "sizes": [3], "seed": 1}
    config = plan.load_config([ROOT / "config" / "test.yaml"])
    assert config["train"]["batch_size"] == 4 and config["train"]["checkpoint_every"] == 60  # the schema's default
    assert config["analysis"]["alpha"] == 0.05 and config["study"] == "test"


STEPS_TABLE = """\
backbone,image_size,batch_size,seconds_per_step,device,concurrency,predict_seconds_per_image,fixed_seconds
vgg16,32,4,0.02,gpu,1,0.001,3
vgg19,32,4,0.02,gpu,1,0.001,3
resnet18,32,4,0.01,gpu,1,0.001,3
resnet50,64,4,0.04,gpu,1,0.001,3
efficientnetb0,32,4,0.02,gpu,1,0.001,3
efficientnetb0,32,4,0.04,gpu,2,0.001,3
efficientnetb5,32,4,0.03,gpu,1,0.001,3
"""


def test_a_steps_table_plans_without_timing_this_machine(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text(STEPS_TABLE)
    args = ["--configfile", "config/demo.yaml", "--steps-table", str(path), "--runs-per-gpu", "2"]
    result = subprocess.run([sys.executable, str(PLAN), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Runs: 24 = " in out and "at most max_epochs = 5" in out and "2,400 optimizer steps" in out
    assert "steps table (gpu)" in out and "GPU-hours" in out and "2 runs packed per GPU" in out
    assert "probing" not in result.stderr  # nothing measured here
    # resnet50's row is at 64 px: scaled to 32 px by pixels per batch, and said so
    assert "resnet50: step scaled by pixels per batch" in out
    rows = plan.read_steps_table(path)
    config = plan.load_config([ROOT / "config" / "demo.yaml"])
    costs = plan.table_costs(rows, config, plan.Notes())
    assert costs["resnet50"].step == pytest.approx(0.01) and costs["resnet18"].predict == pytest.approx(0.004)
    # efficientnetb0: 2 runs on a GPU take 0.04 s a step each, against 0.02 s alone: serialised
    assert plan.packing_share(rows, config, "efficientnetb0", 2)[0] == pytest.approx(1.0)
    assert plan.packing_share(rows, config, "resnet18", 2)[0] == 1.0  # no concurrency row: serialised


def test_packing_and_scheduling_arithmetic_on_a_hand_example():
    # four runs of 10 s overhead + 90 s compute
    runs = [(10.0, 90.0)] * 4
    assert plan.packed_seconds(runs, 1) == 400  # one per GPU: everything in turn
    assert plan.packed_seconds(runs, 4) == 360  # compute serialised: the GPU is the bottleneck
    assert plan.packed_seconds(runs, 4, share=0.5) == 180  # compute of 4 overlaps to half
    assert plan.packed_seconds(runs, 4, share=0.25) == 100  # then each lane's overhead + compute
    assert plan.packed_seconds([(300.0, 90.0)] * 4, 4) == 390  # overhead-bound: (300 + 90) x 4 / 4
    # jobs of 5, 3, 3, 1 s on two slots, each to the first free one: 5 + 1 | 3 + 3 -> 6 s
    assert plan.makespan([5, 3, 3, 1], 2) == 6
    assert plan.makespan([5, 3, 3, 1], 1) == 12
    assert plan.slots(2, 1) == 2 and plan.slots(2, 2) == 1 and plan.slots(2, 8) == 1 and plan.slots(16, 4) == 4
