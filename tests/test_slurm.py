"""profiles/slurm against a real one-node Slurm cluster (tests/slurm/cluster.sh).

Start the cluster first:  tests/slurm/cluster.sh install && tests/slurm/cluster.sh up
Without it these tests skip, except where a cluster is required (CI=true or
UNETCAP_SLURM=1): there a missing cluster fails them. The tests use the cluster
of $SLURM_TEST_ROOT (by default this checkout's; `cluster.sh env` names it), so
two test runs on one machine, each with its own root, do not share one.

The tiny test study goes through the profile: a run where some folds fail
(retried with more memory and time), the dry run that schedules only them, the
rerun; its outputs must equal those of a local run, every job must have gone
through sbatch (sacct lists exactly the jobs Snakemake submitted, found by the
executor's run ID, which is the Slurm job name), and a run cancelled with
scancel mid-training must resume from its checkpoint; all of that one run per
Slurm job (UNETCAP_RUNS_PER_GPU=1). With four runs per GPU, the study's four runs
are one Slurm job on one GPU, side by side, and a run that fails among them
leaves the other three done. Quick toy workflows check the profile's variables
for account, partitions, GPU model and gres.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import CLUSTER_SH, REPO, cluster_env, cluster_problem, tool
from snakemake_run import copy_workflow, job_counts

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

PROFILE = REPO / "profiles" / "slurm"
# Quicker polling than on a production cluster; flags the profile does not set,
# so the profile's own keys stay as they are.
FAST_POLL = [
    "--slurm-init-seconds-before-status-checks", "2",
    "--seconds-between-status-checks", "2",
    "--slurm-keep-successful-logs",
]  # fmt: skip
PROFILE_ENV = (
    "UNETCAP_SLURM_ACCOUNT",
    "UNETCAP_SLURM_PARTITION",
    "UNETCAP_SLURM_GPU_PARTITION",
    "UNETCAP_SLURM_GPU_MODEL",
    "UNETCAP_SLURM_GRES",
    "UNETCAP_RUNS_PER_GPU",
    "SNAKEMAKE_PROFILE",
)


# --------------------------------------------------------------------------- cluster
# The cluster's checks and the `slurm_cluster` fixture are in conftest.py (shared with R's).


def test_a_second_cluster_runs_beside_this_one_and_its_down_leaves_this_one_up(slurm_cluster):
    """Two test runs on one machine: each cluster has its own root and ports, runs its
    own jobs, and stopping one does not touch the other."""
    ours = cluster_env()
    other_root = tempfile.mkdtemp(prefix="unetcap-slurm.", dir="/tmp")  # short: socket paths
    other = {**os.environ, **cluster_env(other_root)}

    def conf(env):
        return Path(env["SLURM_CONF"]).read_text()

    def port(env):
        return re.search(r"^SlurmctldPort=(\d+)", conf(env), flags=re.MULTILINE)[1]

    try:
        up = subprocess.run([str(CLUSTER_SH), "up"], env=other, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stderr[-3000:]
        assert port(other) != port(ours) and other_root in conf(other) and other_root not in conf(ours)
        # a job on each; srun inside the job finds its own cluster without SLURM_CONF
        for env in (other, dict(os.environ)):
            job = subprocess.run(
                ["sbatch", "--wait", "-o", "/dev/null", "--wrap", "env -u SLURM_CONF srun -n1 true"],
                env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert job.returncode == 0, (env["SLURM_CONF"], job.stdout, job.stderr)
        down = subprocess.run([str(CLUSTER_SH), "down"], env=other, capture_output=True, text=True, timeout=180)
        assert down.returncode == 0, down.stderr[-3000:]
        stopped = subprocess.run([str(CLUSTER_SH), "status"], env=other, capture_output=True, text=True)
        assert stopped.returncode != 0 and "slurmctld: not running" in stopped.stdout, stopped.stdout
        assert cluster_problem() is None
    finally:
        subprocess.run([str(CLUSTER_SH), "down"], env=other, capture_output=True, timeout=180)
        shutil.rmtree(other_root, ignore_errors=True)


# --------------------------------------------------------------------------- runs
class Run:
    """One snakemake invocation through the slurm profile."""

    def __init__(self, workdir: Path, proc: subprocess.CompletedProcess, log: Path, seconds: float):
        self.workdir = workdir
        self.returncode = proc.returncode
        self.log = log
        self.text = log.read_text(errors="replace")
        self.seconds = seconds
        ids = re.findall(r"SLURM run ID: (\S+)", self.text)
        self.run_id = ids[-1] if ids else None

    def jobs(self) -> list[dict[str, str]]:
        """sacct's view of this run's Slurm jobs (allocations only), in submit order."""
        assert self.run_id, f"no 'SLURM run ID' in the log {self.log}"
        return sacct_jobs(self.run_id)

    def explain(self) -> str:
        tail = "\n".join(self.text.splitlines()[-60:])
        logs = sorted((self.workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
        failed = "\n".join(
            f"--- {p.relative_to(self.workdir)}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
            for p in logs[-4:]
        )
        return f"snakemake exit {self.returncode} after {self.seconds:.0f}s; log tail:\n{tail}\n{failed}"


SACCT_FIELDS = (
    "JobID", "JobName", "Partition", "Account", "State", "ExitCode",
    "Timelimit", "ReqMem", "AllocTRES", "Comment",
)  # fmt: skip


def sacct_jobs(name: str) -> list[dict[str, str]]:
    # The job record can reach slurmdbd a moment after the job ends.
    for _ in range(20):
        out = tool(
            "sacct", "-X", "-P", "-n", "-S", "now-1days", "--name", name,
            "-o", ",".join(f"{f}%300" for f in SACCT_FIELDS),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        jobs = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.stdout.splitlines() if line]
        if jobs and all(j["State"] not in {"PENDING", "RUNNING", "COMPLETING"} for j in jobs):
            return jobs
        time.sleep(0.5)
    return jobs


def tres(job: dict[str, str]) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in job["AllocTRES"].split(",") if "=" in kv)


def minutes(job: dict[str, str]) -> int:
    """The job's time limit in minutes (sacct writes [D-]HH:MM:SS)."""
    days, _, hms = job["Timelimit"].rpartition("-")
    h, m, _ = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m


def mem_mb(job: dict[str, str]) -> int:
    """The job's allocated memory in MB (sacct writes 32000M, 62.50G, ...)."""
    value = tres(job)["mem"]
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[value[-1]]
    return round(float(value[:-1]) * scale)


def snakemake(
    workdir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: int = 240,
    profile: str | None = str(PROFILE),
) -> Run:
    """Run snakemake in workdir with `--profile profile` (profiles/slurm by its full path;
    None: no --profile), under `timeout -k` (snakemake waits for its running jobs on
    SIGTERM); cancel the run's jobs if it hangs."""
    full_env = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV}
    full_env.update(env or {})
    log = workdir / f"snakemake-{time.strftime('%H%M%S')}-{time.monotonic_ns() % 10**6}.log"
    cmd = ["timeout", "-k", "20", str(timeout), sys.executable, "-m", "snakemake"]
    if profile:
        cmd += ["--profile", profile]
    cmd += [*FAST_POLL, *args]
    start = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, check=False, cwd=workdir, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
    run = Run(workdir, proc, log, time.monotonic() - start)
    if proc.returncode in (124, 137) and run.run_id:
        tool("scancel", "--name", run.run_id)
    print(f"[slurm test] {' '.join(args)}: exit {proc.returncode} in {run.seconds:.0f}s")
    return run


# --------------------------------------------------------------------------- the study
# The tiny test study (config/test.yaml: phantom cohort, 32 px, 2 encoders x 2
# folds, 2 epochs), with a checkpoint after every epoch so that a cancelled run
# has one to resume from. Local and Slurm runs use the same config file.
STUDY_CONFIG = "slurm-test.yaml"
RESULTS = Path("results/slurm-test")  # the study is named after its config file
FAULT = "fail:fold1"  # UNETCAP_FAULT: every run of fold 1 fails before training
# One training run per Slurm job (the profile packs 4 by default): the study's tests
# count, retry and cancel the runs one by one.
ONE_RUN_PER_JOB = {"UNETCAP_RUNS_PER_GPU": "1"}
# Outputs that legitimately differ between two runs: timings, host, Snakemake's
# bookkeeping. Everything else under results/ must be byte-identical, except
# metrics.json (compared without timings and host) and the CSVs with timings.
TIMING_COLUMNS = re.compile(r"^(seconds.*|provenance_host)$")


def study_workdir(tmp_path_factory, name: str) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp(name))
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    config.setdefault("train", {})["checkpoint_every"] = 0
    (workdir / STUDY_CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    return workdir


class Study:
    """The study through Slurm: a run with failing folds, a dry run, the rerun;
    and the same study run locally, for comparison."""

    def __init__(self, local: Path, slurm: Path):
        self.local, self.slurm = local, slurm


@pytest.fixture(scope="module")
def study(slurm_cluster, tmp_path_factory) -> Study:
    local = study_workdir(tmp_path_factory, "study-local")
    slurm = study_workdir(tmp_path_factory, "study-slurm")
    # The local run shares the two cores with the Slurm runs, which mostly wait.
    local_log = (local / "snakemake-local.log").open("w")
    local_env = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV}
    local_proc = subprocess.Popen(
        ["timeout", "-k", "20", "500", sys.executable, "-m", "snakemake",
         "--cores", "2", "--configfile", STUDY_CONFIG],
        cwd=local, env=local_env, stdout=local_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    study = Study(local, slurm)
    try:
        study.faulty = snakemake(
            slurm,
            "--configfile", STUDY_CONFIG, "--keep-going",
            env={**ONE_RUN_PER_JOB, "UNETCAP_FAULT": FAULT}, timeout=300,
        )  # fmt: skip
        study.done_after_faulty = sorted(
            str(p.parent.relative_to(slurm)) for p in (slurm / RESULTS / "runs").rglob("metrics.json")
        )
        # the user's own spelling: `--profile slurm` from the repository root finds
        # profiles/slurm through the link `slurm` (Snakemake looks in the working directory)
        study.dry = snakemake(
            slurm, "--configfile", STUDY_CONFIG, "--dry-run", env=ONE_RUN_PER_JOB, profile="slurm", timeout=120
        )
        # the rerun takes the profile from SNAKEMAKE_PROFILE instead of --profile
        study.rerun = snakemake(
            slurm,
            "--configfile", STUDY_CONFIG,
            env={**ONE_RUN_PER_JOB, "SNAKEMAKE_PROFILE": "profiles/slurm"}, profile=None, timeout=300,
        )  # fmt: skip
    finally:
        study.local_rc = local_proc.wait(timeout=600)
        local_log.close()
    return study


def train_jobs(jobs: list[dict[str, str]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """The training jobs by (backbone, fold), from the comment
    rule_train_wildcards_<size>_<backbone>_<lr>_<reg>_<fold>."""
    found: dict[tuple[str, str], list[dict[str, str]]] = {}
    for job in jobs:
        if job["Comment"].startswith("rule_train_wildcards_"):
            parts = job["Comment"].split("_")
            found.setdefault((parts[4], parts[-1]), []).append(job)
    return found


def test_failed_runs_are_retried_with_more_memory_and_time(study: Study):
    run = study.faulty
    assert run.returncode != 0, run.explain()
    trains = train_jobs(run.jobs())
    assert sorted(trains) == [
        ("efficientnetb0", "0"), ("efficientnetb0", "1"), ("resnet18", "0"), ("resnet18", "1"),
    ], trains  # fmt: skip
    for (_backbone, fold), jobs in trains.items():
        if fold == "0":
            assert [j["State"] for j in jobs] == ["COMPLETED"], jobs
            continue
        # retries: 1 -> attempt 2 with the rule's memory and time doubled
        assert [j["State"] for j in jobs] == ["FAILED", "FAILED"], jobs
        first, second = jobs
        assert mem_mb(second) == 2 * mem_mb(first), jobs
        assert minutes(second) == 2 * minutes(first) >= 2, jobs
    # a failed run leaves no metrics.json; nothing after training ran (merge needs every run)
    assert [Path(p).parts[-1] for p in study.done_after_faulty] == ["fold0", "fold0"], study.done_after_faulty
    assert "rule_summary" not in " ".join(j["Comment"] for j in run.jobs())


def test_rerun_schedules_only_the_failed_runs(study: Study):
    dry = study.dry
    assert dry.returncode == 0, dry.explain()
    assert "Using profiles slurm and" in dry.text  # the bare `--profile slurm`, found through the link
    counts = job_counts(dry.text)
    assert counts.get("train") == 2, counts
    for done in ("phantom", "cohort", "prepare", "splits"):
        assert done not in counts, counts
    folds = re.findall(r"rule train:.*?wildcards: ([^\n]*)", dry.text, flags=re.DOTALL)
    assert len(folds) == 2 and all("fold=1" in w for w in folds), folds


def test_every_job_goes_through_sbatch(study: Study):
    assert study.rerun.returncode == 0, study.rerun.explain()
    for run in (study.faulty, study.rerun):
        jobs = run.jobs()
        submitted = re.findall(r"submitted with SLURM jobid (\d+)", run.text)
        assert sorted(submitted, key=int) == [j["JobID"] for j in jobs], (submitted, jobs)
        # only the aggregate rules run on the submitting machine
        ran_locally = set(re.findall(r"^localrule (\w+):", run.text, flags=re.MULTILINE))
        assert ran_locally <= {"all", "analysis"}, ran_locally
    # run 1: every job Snakemake planned up to training, each once; the four
    # training runs, those of fold 1 twice (retry); nothing after training
    planned = job_counts(study.faulty.text)
    after = {"train", "merge", "sample_size", "stats", "figures", "analysis", "all"}
    want = {rule: n for rule, n in planned.items() if rule not in after and rule != "total"}
    got: dict[str, int] = {}
    for job in study.faulty.jobs():
        rule = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        got[rule] = got.get(rule, 0) + 1
    assert got == {**want, "train": planned["train"] + 2}, (got, planned)
    second = sorted(re.sub(r"_wildcards_.*_(\d+)$", r"_fold\1", j["Comment"]) for j in study.rerun.jobs())
    # the two failed runs, then merge, sample_size, stats and figures as one job (group "summary")
    assert len(second) == 3 and second[0].startswith("rule_summary"), second
    assert second[1:] == ["rule_train_fold1"] * 2, second
    assert all(j["State"] == "COMPLETED" for j in study.rerun.jobs())
    gpus = [tres(j).get("gres/gpu") for j in study.rerun.jobs() if j["Comment"].startswith("rule_train")]
    assert gpus == ["1", "1"]


def _comparable(path: Path):
    """A result file's content without what may differ between two runs of the study."""
    if path.name == "metrics.json":
        obj = json.loads(path.read_text())
        obj.pop("seconds", None)
        obj["provenance"].pop("host", None)
        obj.get("train", {}).pop("resumed", None)
        return obj
    if path.suffix == ".csv":
        import pandas as pd

        frame = pd.read_csv(path)
        return frame[[c for c in frame.columns if not TIMING_COLUMNS.match(c)]].to_csv(index=False)
    return path.read_bytes()


def compare_results(local: Path, slurm: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Files under results/ that differ (or exist on one side only)."""

    def rel(root):
        return {p.relative_to(root) for p in (root / "results").rglob("*") if p.is_file()}

    both, differ = rel(local) | rel(slurm), []
    for name in sorted(both):
        if any(part in str(name) for part in skip):
            continue
        a, b = local / name, slurm / name
        if not (a.exists() and b.exists()):
            differ.append(f"{name}: only in {'local' if a.exists() else 'slurm'} run")
        elif _comparable(a) != _comparable(b):
            ca, cb = _comparable(a), _comparable(b)
            if isinstance(ca, dict) and isinstance(cb, dict):
                keys = sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))
                detail = "; ".join(f"{k}: {ca.get(k)!r:.120} != {cb.get(k)!r:.120}" for k in keys[:3])
            elif isinstance(ca, str):
                lines = [(x, y) for x, y in zip(ca.splitlines(), cb.splitlines()) if x != y]
                detail = f"{lines[:2]!r:.400}"
            else:
                detail = f"{len(ca)} vs {len(cb)} bytes"
            differ.append(f"{name} differs: {detail}")
    return differ


def test_slurm_outputs_equal_the_local_run(study: Study):
    assert study.local_rc == 0, (study.local / "snakemake-local.log").read_text()[-3000:]
    assert study.rerun.returncode == 0, study.rerun.explain()
    differ = compare_results(study.local, study.slurm, skip=(".png", ".pdf"))
    assert not differ, differ
    figures = sorted(p.name for p in (study.slurm / RESULTS / "figures").glob("*.png"))
    assert figures == sorted(p.name for p in (study.local / RESULTS / "figures").glob("*.png"))


def test_forcing_one_fold_schedules_it_and_the_summary(study: Study):
    """The README's command for retraining one fold, as a dry run."""
    target = next((study.slurm / RESULTS / "runs").glob("size*/resnet18/*/fold0/metrics.json"))
    dry = snakemake(study.slurm, "--configfile", STUDY_CONFIG, "--dry-run", "--forcerun",
                    str(target.relative_to(study.slurm)), env=ONE_RUN_PER_JOB)  # fmt: skip
    assert dry.returncode == 0, dry.explain()
    counts = job_counts(dry.text)
    assert counts.get("train") == 1 and counts.get("merge") == 1, counts


def test_cancelled_run_resumes_from_its_checkpoint(study: Study):
    """scancel mid-training: the retry resumes from the epoch-1 checkpoint and ends
    with the numbers of an uninterrupted run."""
    assert study.rerun.returncode == 0, study.rerun.explain()
    target = next((study.slurm / RESULTS / "runs").glob("size*/efficientnetb0/*/fold0/metrics.json"))
    rel = str(target.relative_to(study.slurm))
    checkpoint = target.parent / "checkpoint" / "state.npz"
    for _ in range(2):  # the cancel can lose the race against a fast last epoch
        log = study.slurm / f"snakemake-cancel-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if k not in PROFILE_ENV} | ONE_RUN_PER_JOB
        with log.open("w") as fh:
            proc = subprocess.Popen(
                ["timeout", "-k", "20", "240", sys.executable, "-m", "snakemake", "--profile", str(PROFILE),
                 *FAST_POLL, rel, "--configfile", STUDY_CONFIG, "--forcerun", rel],
                cwd=study.slurm, env=env, stdout=fh, stderr=subprocess.STDOUT,
            )  # fmt: skip
            cancelled = None
            deadline = time.monotonic() + 180
            while proc.poll() is None and time.monotonic() < deadline and cancelled is None:
                if checkpoint.exists():
                    ids = re.findall(r"submitted with SLURM jobid (\d+)", log.read_text())
                    if ids:
                        cancelled = ids[0]
                        tool("scancel", cancelled)
                time.sleep(0.1)
            rc = proc.wait(timeout=240)
        run = Run(study.slurm, subprocess.CompletedProcess([], rc), log, 0)
        assert rc == 0, run.explain()
        states = [j["State"] for j in run.jobs()]
        if states and states[0].startswith("CANCELLED"):
            break
    assert cancelled is not None, run.explain()
    assert [s.split()[0] for s in states] == ["CANCELLED", "COMPLETED"], states
    metrics = json.loads(target.read_text())
    assert metrics["train"]["resumed"] == 1, metrics["train"]
    assert not checkpoint.exists()
    local = study.local / rel
    assert _comparable(target) == _comparable(local)
    assert _comparable(target.parent / "history.csv") == _comparable(local.parent / "history.csv")


# --------------------------------------------------------------------------- several runs per GPU
# Four runs per GPU: the study's four training runs and their pack job are one group
# job, one Slurm job on one GPU, where the four run side by side. The first run leaves
# UNETCAP_RUNS_PER_GPU unset (the profile's default, 4, reaches the workflow and the
# job), the others set it. The stages before training come from the study's Slurm run,
# so that only training runs here.
PACKED = {"UNETCAP_RUNS_PER_GPU": "4"}
PACK_FLAG = RESULTS / "packs" / "pack0.done"
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", flags=re.MULTILINE)


class Packed:
    """Four runs per GPU: a run of the four; a forced rerun where one of them fails; the
    plan of the next invocation."""

    def __init__(self, workdir: Path, runs: list[str], failing: str):
        self.workdir, self.runs, self.failing = workdir, runs, failing

    def log_spans(self) -> list[tuple[str, str]]:
        """Each training log's first and last time stamp."""
        spans = []
        for log in (self.workdir / "logs" / "slurm-test" / "train").rglob("*.log"):
            times = LOG_TIME.findall(log.read_text())
            spans.append((times[0], times[-1]))
        return spans

    def done(self) -> dict[str, int]:
        """The runs with a metrics.json (folders under runs/), with its mtime in ns."""
        root = self.workdir / RESULTS / "runs"
        return {str(p.parent.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("metrics.json")}


@pytest.fixture(scope="module")
def packed(study: Study, tmp_path_factory) -> Packed:
    workdir = study_workdir(tmp_path_factory, "study-packed")
    for stage in ("phantom", "cohort", "prepared", "splits"):
        shutil.copytree(study.slurm / RESULTS / stage, workdir / RESULTS / stage)
    shutil.copytree(study.slurm / ".snakemake" / "metadata", workdir / ".snakemake" / "metadata")
    root = study.local / RESULTS / "runs"
    runs = sorted(str(p.parent.relative_to(root)) for p in root.rglob("metrics.json"))
    # the fault hits one run only: efficientnetb0, fold 1
    packed = Packed(workdir, runs, next(r for r in runs if "/efficientnetb0/" in r and r.endswith("/fold1")))
    # the runs and the pack flag: what merge and `all` ask for (a target comes before
    # --configfile, which takes every name after it)
    targets = (*(str(RESULTS / "runs" / r / "metrics.json") for r in runs), str(PACK_FLAG))
    args = (*targets, "--configfile", STUDY_CONFIG)
    packed.clean = snakemake(workdir, *args, timeout=300)
    packed.done_after_clean = packed.done()
    packed.spans_after_clean = packed.log_spans()
    packed.unlike_local_after_clean = [
        f"{run}/{file}"
        for run in packed.done_after_clean
        for file in ("metrics.json", "history.csv")
        if _comparable(workdir / RESULTS / "runs" / run / file) != _comparable(root / run / file)
    ]
    # --retries 0: the profile's retry would run the four again and end the same
    # (two more minutes here)
    fault = {**PACKED, "UNETCAP_FAULT": f"fail:{packed.failing}"}
    packed.faulty = snakemake(
        workdir, *args, "--keep-going", "--forcerun", "train", "--retries", "0", env=fault, timeout=300
    )
    packed.done_after_faulty = packed.done()
    packed.next = snakemake(workdir, *args, "--dry-run", env=PACKED, timeout=120)
    return packed


def test_four_runs_share_one_slurm_job_and_one_gpu_side_by_side(packed: Packed):
    run = packed.clean
    assert run.returncode == 0, run.explain()
    assert job_counts(run.text) == {"train": 4, "pack": 1, "total": 5}, job_counts(run.text)
    jobs = run.jobs()
    assert len(jobs) == 1 and jobs[0]["State"] == "COMPLETED", jobs
    job = jobs[0]
    # one GPU for the four; CPUs and memory four runs' (cpus_per_task 4 a run)
    assert tres(job).get("gres/gpu") == "1" and tres(job)["cpu"] == "16", job
    run_mem = {int(m) for m in re.findall(r"rule train:.*?mem_mb=(\d+)", run.text, flags=re.DOTALL)}
    assert len(run_mem) == 1 and mem_mb(job) == 4 * run_mem.pop(), job
    assert sorted(packed.done_after_clean) == packed.runs, packed.done_after_clean
    # side by side: a moment within all four runs' logs, between first and last line
    spans = packed.spans_after_clean
    assert len(spans) == 4 and max(a for a, _ in spans) < min(b for _, b in spans), spans
    # the numbers of the local run: Snakemake's threads of 0 leave TensorFlow's alone
    assert packed.unlike_local_after_clean == [], packed.unlike_local_after_clean
    flag = (packed.workdir / PACK_FLAG).read_text().splitlines()  # the pack's runs, in grid order
    assert sorted(str(Path(line).relative_to(RESULTS / "runs")) for line in flag) == packed.runs, flag


def test_a_run_that_fails_in_a_pack_leaves_the_others_done_and_goes_again_alone(packed: Packed):
    faulty = packed.faulty
    assert faulty.returncode != 0, faulty.explain()
    jobs = faulty.jobs()
    assert len(jobs) == 1 and jobs[0]["State"] == "FAILED" and tres(jobs[0]).get("gres/gpu") == "1", jobs
    # the other three runs of the job kept their metrics.json (retrained: forced)
    others = set(packed.runs) - {packed.failing}
    assert set(packed.done_after_faulty) == others, packed.done_after_faulty
    assert all(packed.done_after_faulty[r] > packed.done_after_clean[r] for r in others)
    # the next invocation: the failed run and the pack job, one group job
    plan = packed.next
    assert plan.returncode == 0, plan.explain()
    assert job_counts(plan.text) == {"train": 1, "pack": 1, "total": 2}, job_counts(plan.text)
    assert plan.text.count("Group job gpu") == 1, plan.explain()
    outputs = re.findall(r"rule train:.*?output: ([^\n]*)", plan.text, flags=re.DOTALL)
    assert len(outputs) == 1 and f"/{packed.failing}/metrics.json" in outputs[0], outputs


# --------------------------------------------------------------------------- cluster names
# The profile's variables for account, partitions, GPU model and gres, checked on
# a two-rule toy workflow (named like the study's rules, so that the profile's
# set-resources apply) to keep it quick: one splits job and one train job, at once.
TOY_SNAKEFILE = """
import json, os

rule splits:
    output:
        "results/splits/size{size}.json",
    run:
        with open(output[0], "w") as fh:
            json.dump({"job": os.environ.get("SLURM_JOB_ID")}, fh)

rule train:
    input:
        "results/splits/size{size}.json",
    output:
        "results/runs/size{size}/metrics.json",
    run:
        with open(output[0], "w") as fh:
            json.dump({"job": os.environ.get("SLURM_JOB_ID"),
                       "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}, fh)
"""
TOY_TARGETS = ("results/splits/size500.json", "results/runs/size200/metrics.json")


def toy_run(tmp_path_factory, name: str, env: dict[str, str], *args: str) -> Run:
    workdir = tmp_path_factory.mktemp(name)
    (workdir / "Snakefile").write_text(TOY_SNAKEFILE)
    (workdir / "results" / "splits").mkdir(parents=True)
    (workdir / "results" / "splits" / "size200.json").write_text("{}")
    return snakemake(workdir, *args, *TOY_TARGETS, env=env, timeout=120)


@pytest.mark.parametrize("runs_per_gpu", ["1", "4"])
def test_account_partitions_and_gpu_model_from_the_environment(runs_per_gpu, slurm_cluster, tmp_path_factory):
    """The GPU model in both of the profile's forms of a training job's GPU: --gpus with one
    run per GPU, the gres string of a packed job with several (the toy has no packs, so its
    one run goes alone, in that form)."""
    env = {
        "UNETCAP_SLURM_ACCOUNT": "unetcap",
        "UNETCAP_SLURM_PARTITION": "gpu",  # not the default partition (cpu)
        "UNETCAP_SLURM_GPU_PARTITION": "cpu",
        "UNETCAP_SLURM_GPU_MODEL": "testgpu",
        "UNETCAP_RUNS_PER_GPU": runs_per_gpu,
    }
    run = toy_run(tmp_path_factory, "toy-env", env, "--verbose")
    assert run.returncode == 0, run.explain()
    if runs_per_gpu == "1":
        assert " --gpus=testgpu:1" in run.text and " --gres=" not in run.text
    else:
        assert " --gres=gpu:testgpu:1" in run.text and " --gpus=" not in run.text
    jobs = {j["Comment"].split("_wildcards")[0]: j for j in run.jobs()}
    assert sorted(jobs) == ["rule_splits", "rule_train"], jobs
    assert all(j["State"] == "COMPLETED" and j["Account"] == "unetcap" for j in jobs.values()), jobs
    train, splits = jobs["rule_train"], jobs["rule_splits"]
    assert train["Partition"] == "cpu" and tres(train).get("gres/gpu:testgpu") == "1", train
    assert splits["Partition"] == "gpu" and "gres/gpu" not in tres(splits), splits
    assert mem_mb(splits) == 2000 and splits["Timelimit"] == "00:10:00", splits  # set-resources splits


def test_gres_instead_of_gpus(slurm_cluster, tmp_path_factory):
    env = {"UNETCAP_SLURM_GRES": "gpu:testgpu:1", **ONE_RUN_PER_JOB}
    run = toy_run(tmp_path_factory, "toy-gres", env, "--verbose")
    assert run.returncode == 0, run.explain()
    train = next(j for j in run.jobs() if j["Comment"].startswith("rule_train"))
    assert train["State"] == "COMPLETED" and tres(train).get("gres/gpu:testgpu") == "1", train
    assert tres(train)["cpu"] == "4", train  # cpus_per_gpu: max(threads, 4)
    assert " --gres=gpu:testgpu:1" in run.text and " --gpus=" not in run.text
    record = json.loads((run.workdir / TOY_TARGETS[1]).read_text())
    assert record["job"] == train["JobID"] and record["cuda_visible_devices"] is not None, record
