"""What a study will cost, before anything trains: runs, optimizer steps, measured seconds per
step and per-run overhead, and the totals on this machine and on a Slurm GPU cluster.

    .venv/bin/python benchmarks/plan.py                                      # the paper's study (config/config.yaml)
    .venv/bin/python benchmarks/plan.py --configfile config/demo.yaml        # a config laid over it
    .venv/bin/python benchmarks/plan.py --configfile config/test.yaml --actual   # ... then run it and compare
    .venv/bin/python benchmarks/plan.py --steps-table steps.csv              # step times measured elsewhere

The config is config/config.yaml with each --configfile laid over it as Snakemake lays them
(dicts merged key by key, recursively; lists and values replaced), its defaults filled from
the schema. Counts follow docs/design.md §5 (`unetcap.splits`), assuming every patient gives
`images_per_patient` images. The costs come from this machine, measured here and now (and so
under whatever else runs on it):
  - per encoder, a probe process (benchmarks/run.py's `measure_network`: TensorFlow and the
    run's U-Net, optimizer and compiled functions from `unetcap.train.build_network` with the
    config's training settings, a few timed steps after the first) also times a prediction
    call at the holdout pool's batch, a copy of the weights and a checkpoint write; P probes
    run at once, as P runs will (P = cores // train.threads);
  - Snakemake's cost per job: a throw-away workflow of trivial `script:` jobs;
  - for a phantom cohort, the stages around training run for real in a temporary copy of the
    workflow: phantom, cohort, prepare and splits; then merge, sample_size, stats and figures
    on stand-in run outputs (the real stages, on made-up scores), less a Snakemake start-up
    (a dry run, whose job counts are printed as a check).
What is not measured is printed as an assumption with its source. With --steps-table FILE
(columns backbone, image_size, batch_size, seconds_per_step, optionally device, concurrency,
predict_seconds_per_image, fixed_seconds) nothing on this machine is timed.

The model (every term printed):
  run = Snakemake job + process start and exit + import + build + (first step - step)
        + (first prediction - prediction) + steps x step + epochs x (validation predictions
        + weight copy) + final scoring (validation, test, holdout pool, kept segmentations)
        + checkpoints x checkpoint write   (checkpoints: one per train.checkpoint_every s of fit)
  local study = before (start-up, phantom, cohort, prepare, splits) + the runs scheduled in
        the DAG's order on P slots (each run to the first free slot) + after (merge, analysis)
  GPU cluster, one run per GPU job: GPU time = sum over runs of (overhead + compute), where
        compute = optimizer steps and predictions, overhead = the rest;
  k runs packed per GPU (runs of one encoder together): GPU time = max(sum of compute x s_k,
        sum of (overhead + compute) / k), s_k = t_k / (k t_1) from the steps table's
        concurrency rows (t_k: seconds per step of each of k runs sharing a GPU), else 1: the
        k runs' compute fully serialised.
Totals are printed at both bounds of the schedule; the headline is the upper (max_epochs).

--actual then runs the study from scratch in a temporary copy of the workflow (`snakemake
--configfile ... --cores N`) and prints predicted against actual wall time, per phase and
per encoder's run (from Snakemake's log and the runs' metrics.json), with the machine's load
average while the planner measured and while the study ran: the two compare only when
alike. Nothing is calibrated on the study it checks: every cost is measured by the planner
itself, or assumed from a documented measurement.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import run as bench  # noqa: E402  benchmarks/run.py: the probe's build and timings (it puts tests/ on the path)

PROFILE = ROOT / "profiles" / "default" / "config.yaml"
RUNS_PER_GPU_ENV = "UNETCAP_RUNS_PER_GPU"
STUDY_STAGES = ("phantom", "cohort", "prepare", "splits")
SUMMARY_STAGES = ("merge", "sample_size", "stats", "figures", "analysis", "all")

# What the planner assumes where it measures nothing, each with its source.
SNAKEMAKE_JOB = (
    1.1,
    "Snakemake's cost per script job: this planner measured 0.7-1.7 s on the loaded 2-core development machine",
)
SNAKEMAKE_START = (4.1, "README, Performance: `snakemake -n` on the paper config, 4.1 s for 1632 jobs")
PREPARE_RATE = (659.0, "README, Performance: cohort scan + preparation, 659 images/s at 256 px, 2 workers")
SUMMARY = (
    (50.0, 0.01),
    "README: rebuilding the showcase's tables and figures (96 runs) took 50 s; "
    "tests/test_grid_shapes.py: the GAM's smoothing search takes about 1 s per 100 runs",
)
PROCESS = (
    3.0,
    "a TensorFlow process's start and exit: this planner's probes measured 3-8 s, two at once on the loaded "
    "2-core development machine",
)
# README, Performance, 256 px at the paper's settings: import + build + first step and first
# prediction beyond the steady ones, per encoder (2 threads, 2-core development machine)
README_FIXED = {
    "vgg16": 4.2,
    "vgg19": 4.1,
    "resnet18": 4.6,
    "resnet50": 7.1,
    "efficientnetb0": 7.9,
    "efficientnetb5": 20.6,
}
README_FIXED_SOURCE = "README, Performance: import + build + first step and prediction at 256 px, 2 threads"
FORWARD_SHARE = (
    1 / 3,
    "a prediction costs a third of a training step per image (forward pass only; "
    "the backward pass costs about twice the forward)",
)


# ----------------------------------------------------------------------------- the config
def overlay(base: dict, over: dict) -> dict:
    """`over` laid on `base` as Snakemake lays a config file on the config: dicts merged key
    by key, recursively; any other value (lists included) replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(configfiles) -> dict:
    """config/config.yaml with `configfiles` laid over it in order, the study named as the
    workflow names it, and the schema's defaults filled in (the schema is the only place
    they are written)."""
    import yaml

    from unetcap import schema
    from unetcap.study import study_name

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text()) or {}
    given: dict = {}
    for path in configfiles:
        layer = yaml.safe_load(Path(path).read_text()) or {}
        config, given = overlay(config, layer), overlay(given, layer)
    config["study"] = study_name(given, configfiles, ROOT / "config" / "config.yaml")
    return schema.validated(config)


def profile_cores() -> int:
    """The local profile's `cores` (profiles/default): a number, or all = this machine's CPUs."""
    import yaml

    cores = (yaml.safe_load(PROFILE.read_text()) or {}).get("cores", "all")
    return len(os.sched_getaffinity(0)) if cores == "all" else int(cores)


def slots(cores: int, threads: int) -> int:
    """Training jobs at once under the local executor: cores // train.threads (Snakemake gives
    a job at most `cores` threads, so at least one)."""
    return max(1, cores // min(threads, cores))


# ----------------------------------------------------------------------------- counts
@dataclass(frozen=True)
class Run:
    """One training run of the grid and its images (docs/design.md §5)."""

    size: int
    backbone: str
    lr: float
    reg: float
    fold: int
    n_train: int
    n_val: int
    n_test: int
    holdout_patients: int
    images_per_patient: int

    @property
    def n_holdout(self) -> int:
        return self.holdout_patients * self.images_per_patient


def fold_val_images(size: int, config: dict) -> list[int]:
    """Validation images of each fold of a size (the development images dealt to its
    patients, the patients dealt to the folds round-robin), every patient at
    images_per_patient images."""
    from unetcap.splits import deal, plan_subset

    folds, m = config["folds"], config["images_per_patient"]
    plan = plan_subset(size, folds, m, config["holdout_fraction"])
    shares = deal(plan.dev_images, [m] * plan.dev_patients)
    return [sum(shares[f::folds]) for f in range(folds)]


def plan_runs(config: dict) -> list[Run]:
    """Every training run of the config, in the order the workflow lists them (size,
    backbone, lr, reg, fold): sizes x backbones x lrs x regs x folds x repeats of each size."""
    from unetcap.splits import holdout_count, plan_subset, repeats_per_size

    folds, m = config["folds"], config["images_per_patient"]
    repeats = repeats_per_size(config["sizes"], config["repeats"])
    holdout = holdout_count(config["cohort"]["patients"], config["holdout_fraction"])
    runs = []
    for size in config["sizes"]:
        plan = plan_subset(size, folds, m, config["holdout_fraction"])
        val = fold_val_images(size, config)
        for backbone in config["backbones"]:
            for lr in config["lrs"]:
                for reg in config["regs"]:
                    for fold in range(folds * repeats[size]):
                        n_val = val[fold % folds]
                        n_train = plan.dev_images - n_val
                        runs.append(Run(size, backbone, lr, reg, fold, n_train, n_val, plan.test_images, holdout, m))
    return runs


@dataclass(frozen=True)
class Schedule:
    """How many optimizer steps a run takes (config `train`)."""

    batch_size: int
    steps_per_epoch: int  # 0: one pass over the training images
    min_epochs: int
    patience: int
    max_epochs: int

    @classmethod
    def from_config(cls, train: dict) -> Schedule:
        keys = ("batch_size", "steps_per_epoch", "min_epochs", "patience", "max_epochs")
        return cls(**{key: train[key] for key in keys})

    def epoch_bounds(self) -> tuple[int, int]:
        """(fewest, most) epochs of a run: early stopping stops at the earliest after
        patience + 1 epochs (the first sets the best loss, then `patience` without a lower
        one), never before min_epochs, and max_epochs caps it."""
        return min(self.max_epochs, max(self.min_epochs, self.patience + 1)), self.max_epochs

    def steps_per_epoch_of(self, n_train: int) -> int:
        """train.steps_per_epoch N > 0: N drawn batches; else one pass, ceil(n / batch)."""
        return self.steps_per_epoch or math.ceil(n_train / self.batch_size)


# ----------------------------------------------------------------------------- costs
@dataclass
class Costs:
    """Seconds of one encoder's parts of a run (measured by a probe, or from a table)."""

    step: float  # one optimizer step at the config's batch
    predict: float  # one prediction call of a training batch (validation, test)
    predict_holdout: float  # one prediction call of `holdout_batch` images
    holdout_batch: int
    import_: float = 0.0  # TensorFlow, segmentation-models and the library
    build: float = 0.0  # model, optimizer, compiled functions
    first_step: float = 0.0  # the first step beyond a steady one (tracing)
    first_predict: float = 0.0  # the first prediction beyond a steady one
    weights: float = 0.0  # copying the weights after an epoch (early stopping keeps the best)
    checkpoint: float = 0.0  # one checkpoint write
    process: float = 0.0  # the process's start and exit
    source: str = ""


def holdout_batch(config: dict) -> int:
    """Images per prediction call when a run scores the holdout pool: the loop's batch,
    max(batch_size, 2^20 / S^2), patient by patient (at most images_per_patient)."""
    from unetcap.train.loop import INFERENCE_PIXELS

    batch = max(config["train"]["batch_size"], INFERENCE_PIXELS // config["image_size"] ** 2)
    return min(batch, config["images_per_patient"])


def training_settings(config: dict) -> dict:
    """Config `train`'s training settings that this version of the library knows (so
    train.precision and train.jit are passed once `Settings` has them), without resources."""
    from unetcap.train import Settings

    return {key: value for key, value in config["train"].items() if key in Settings.names()}


def probe_main(spec: dict) -> None:
    """In a probe process: benchmarks/run.py's timings with the run's settings, then a
    holdout-batch prediction, a weight copy and a checkpoint write. Prints one JSON line."""
    started = time.perf_counter()
    import numpy as np

    from unetcap.train.checkpoint import write_checkpoint
    from unetcap.train.loop import new_state

    steps = spec["steps"]
    seconds, net, _ = bench.measure_network(
        spec["backbone"], spec["image_size"], spec["batch"], spec["threads"], steps, spec["settings"]
    )
    x = np.random.default_rng(1).random((spec["holdout_batch"], spec["image_size"], spec["image_size"], 1), np.float32)
    seconds["first_predict_holdout"] = bench.timed(net.predict, x)  # a new shape: oneDNN's set-up again
    seconds["predict_holdout"] = float(np.median([bench.timed(net.predict, x) for _ in range(steps)]))
    copies = []
    for _ in range(3):
        t = time.perf_counter()
        weights = net.get_weights()
        copies.append(time.perf_counter() - t)
    seconds["weights"] = float(np.median(copies))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_checkpoint(Path(tmp), new_state("probe", 1e-3), weights, weights, net.optimizer_weights())
        seconds["checkpoint"] = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "started": started, "ended": time.perf_counter()}), flush=True)


def run_probes(config: dict, backbone: str, at_once: int, steps: int) -> Costs:
    """One encoder's Costs: `at_once` probe processes started together (as many as runs
    will share this machine), their timings averaged."""
    spec = {
        "backbone": backbone,
        "image_size": config["image_size"],
        "batch": config["train"]["batch_size"],
        "threads": config["train"]["threads"],
        "steps": steps,
        "settings": training_settings(config),
        "holdout_batch": holdout_batch(config),
    }
    from concurrent.futures import ThreadPoolExecutor

    def probe(_) -> dict:
        spawned = time.perf_counter()
        cmd = [sys.executable, __file__, "--probe", json.dumps(spec)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=bench.quiet_env())
        exited = time.perf_counter()
        if done.returncode:
            sys.exit(f"probe {backbone} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        return {**result["seconds"], "process": result["started"] - spawned + exited - result["ended"]}

    with ThreadPoolExecutor(at_once) as pool:
        found = list(pool.map(probe, range(at_once)))
    mean = {key: sum(f[key] for f in found) / len(found) for key in found[0]}
    return Costs(
        step=mean["step"],
        predict=mean["predict"],
        predict_holdout=mean["predict_holdout"],
        holdout_batch=spec["holdout_batch"],
        import_=mean["import"],
        build=mean["build"],
        first_step=max(0.0, mean["first_step"] - mean["step"]),
        first_predict=max(0.0, mean["first_predict"] - mean["predict"])
        + max(0.0, mean["first_predict_holdout"] - mean["predict_holdout"]),
        weights=mean["weights"],
        checkpoint=mean["checkpoint"],
        process=mean["process"],
        source=f"measured here, {at_once} probe(s) at once",
    )


# ----------------------------------------------------------------------------- steps table
def read_steps_table(path, precision: str = "float32") -> list[dict]:
    """The rows of a steps table (CSV: backbone, image_size, batch_size, seconds_per_step and
    optionally device, concurrency, predict_seconds_per_image, fixed_seconds, and precision
    and channels_last, as benchmarks/gpu_throughput.py writes them: then only the rows of
    `precision`, the config's train.precision, in the default memory format, as runs train)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows = [
        row
        for row in rows
        if row.get("precision", precision) == precision
        and row.get("channels_last", "False") in ("False", "false", "0", "")
    ]
    needed = {"backbone", "image_size", "batch_size", "seconds_per_step"}
    missing = needed - set(rows[0]) if rows else needed
    if missing:
        sys.exit(f"{path}: a steps table needs rows with the columns {sorted(needed)} (missing {sorted(missing)})")
    for row in rows:
        row["image_size"], row["batch_size"] = int(row["image_size"]), int(row["batch_size"])
        row["seconds_per_step"] = float(row["seconds_per_step"])
        row["concurrency"] = int(row.get("concurrency") or 1)
    return rows


def table_row(rows: list[dict], backbone: str, image_size: int, batch: int, concurrency: int = 1):
    """(row, scale): the table's row for the encoder at this image size and batch, or the one
    nearest in pixels per batch, whose step is then scaled by pixels per batch (scale != 1)."""
    mine = [r for r in rows if r["backbone"] == backbone and r["concurrency"] == concurrency]
    if not mine:
        return None, 1.0
    work = image_size**2 * batch
    best = min(mine, key=lambda r: abs(math.log(r["image_size"] ** 2 * r["batch_size"] / work)))
    return best, work / (best["image_size"] ** 2 * best["batch_size"])


def table_costs(rows: list[dict], config: dict, notes: Notes) -> dict[str, Costs]:
    """Each encoder's Costs from a steps table: the step from it, predictions and the fixed
    cost from its optional columns, else assumed (and said so)."""
    size, batch, hb = config["image_size"], config["train"]["batch_size"], holdout_batch(config)
    costs, missing = {}, []
    for backbone in config["backbones"]:
        row, scale = table_row(rows, backbone, size, batch)
        if row is None:
            missing.append(backbone)
            continue
        step = row["seconds_per_step"] * scale
        per_image = float(row.get("predict_seconds_per_image") or 0) or step / batch * FORWARD_SHARE[0]
        if not row.get("predict_seconds_per_image"):
            notes.assume(FORWARD_SHARE[1], backbone)
        if scale != 1:
            notes.assume(
                f"step scaled by pixels per batch from the table's {row['image_size']} px, "
                f"batch {row['batch_size']} (x{scale:.3g})",
                backbone,
            )
        fixed = row.get("fixed_seconds")
        if not fixed:
            notes.assume(f"fixed cost as {README_FIXED_SOURCE} (4.1-20.6 s)", backbone)
        device = row.get("device") or "unknown device"
        costs[backbone] = Costs(
            step=step,
            predict=per_image * batch,
            predict_holdout=per_image * hb,
            holdout_batch=hb,
            build=float(fixed or README_FIXED[backbone]),
            process=PROCESS[0],
            source=f"steps table ({device})",
        )
    if missing:
        sys.exit(f"the steps table has no row for {missing} (it has {sorted({r['backbone'] for r in rows})})")
    return costs


def packing_share(rows: list[dict] | None, config: dict, backbone: str, k: int) -> tuple[float, str]:
    """s_k = t_k / (k t_1) for k runs sharing a GPU, from the table's concurrency rows; 1
    (compute fully serialised) without them."""
    if not rows or k == 1:
        return 1.0, "1 (compute fully serialised: no concurrency rows)"
    size, batch = config["image_size"], config["train"]["batch_size"]
    one, scale1 = table_row(rows, backbone, size, batch, 1)
    many, scale_k = table_row(rows, backbone, size, batch, k)
    if one is None or many is None:
        return 1.0, f"1 (compute fully serialised: no concurrency-{k} row)"
    share = many["seconds_per_step"] * scale_k / (k * one["seconds_per_step"] * scale1)
    return share, f"{share:.2f} (the table's concurrency-{k} row)"


# ----------------------------------------------------------------------------- Snakemake and the stages
@dataclass
class Notes:
    """The assumptions a plan made, in the order it made them, each with what it applies to
    (printed at the end)."""

    found: dict[str, list[str]] = field(default_factory=dict)

    def assume(self, line: str, subject: str = "") -> None:
        subjects = self.found.setdefault(line, [])
        if subject and subject not in subjects:
            subjects.append(subject)

    @property
    def lines(self) -> list[str]:
        return [f"{', '.join(s)}: {line}" if s else line for line, s in self.found.items()]


TRIVIAL = """rule all:
    input:
        expand("out/{{i}}.txt", i=range({n})),


rule job:
    output:
        "out/{{i}}.txt",
    script:
        "job.py"
"""


def snakemake_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "snakemake", *args]


def timed_run(cmd: list[str], cwd, timeout: float = 3600) -> tuple[float, subprocess.CompletedProcess]:
    """Wall seconds of a command and its completed process (output captured)."""
    t = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=bench.quiet_env())
    return time.perf_counter() - t, result


def measure_snakemake_job(at_once: int) -> float:
    """Seconds a script job costs Snakemake's local executor beyond its script's work (the
    interpreter, Snakemake's preamble, the bookkeeping), per job slot: 2 x `at_once` trivial
    jobs on `at_once` cores, less a run with nothing to do."""
    n = max(4, 2 * at_once)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "Snakefile").write_text(TRIVIAL.format(n=n))
        Path(tmp, "job.py").write_text("open(snakemake.output[0], 'w').close()\n")
        busy, result = timed_run(snakemake_cmd("--cores", str(at_once)), tmp)
        if result.returncode:
            sys.exit(f"the Snakemake probe failed:\n{result.stderr[-3000:]}")
        idle, _ = timed_run(snakemake_cmd("--cores", str(at_once)), tmp)
    return max(0.0, busy - idle) * at_once / n


def workflow_configfiles(configfiles) -> list[str]:
    """The config files as a copy of the workflow finds them: relative inside the repository,
    absolute outside."""
    out = []
    for path in configfiles:
        full = Path(path).resolve()
        out.append(str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(full))
    return out


def measure_stages(configfiles, config: dict, runs: list[Run], cores: int) -> dict:
    """The non-training stages of a phantom study, run in a temporary copy of the workflow:
    {"before": start-up + phantom, cohort, prepare, splits; "startup": a dry run; "after":
    merge, sample_size, stats and figures on stand-in run outputs, less a start-up;
    "jobs": the dry run's job counts}."""
    from snakemake_run import copy_workflow, job_counts

    results = f"results/{config['study']}"
    files = ["--configfile", *workflow_configfiles(configfiles), "--cores", str(cores)]
    targets = [f"{results}/prepared/store.json", *(f"{results}/splits/size{s}.json" for s in config["sizes"])]
    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(Path(tmp))
        before, result = timed_run(snakemake_cmd(*targets, *files), work)
        check(result, "the stages before training")
        per_stage = stage_seconds(result.stdout + "\n" + result.stderr)
        startup, result = timed_run(snakemake_cmd("-n", *files), work)
        check(result, "the dry run")
        jobs = job_counts(result.stdout)
        write_standins(work / results, config, runs)
        summary = ["--allowed-rules", *SUMMARY_STAGES, "--rerun-triggers", "mtime"]
        after, result = timed_run(snakemake_cmd(*summary, *files), work)
        check(result, "the stages after training (on stand-in run outputs)")
        per_stage.update(stage_seconds(result.stdout + "\n" + result.stderr))
    after = max(0.0, after - startup)
    return {"before": before, "startup": startup, "after": after, "jobs": jobs, "stages": per_stage}


def check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode:
        sys.exit(f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def write_standins(results: Path, config: dict, runs: list[Run]) -> None:
    """Made-up outputs of every run (metrics.json, history.csv, segmentations.npz, as the
    contract has them, DICE rising with size), so that the stages after training can be
    timed on a study of the grid's shape without training it."""
    import numpy as np

    from unetcap.prepare import load_store
    from unetcap.segmentations import write_run_segmentations
    from unetcap.splits import fold_indices, holdout_patients, read_manifest
    from unetcap.train.data import segmentation_rows

    _, masks, meta = load_store(results / "prepared/store.json")
    rng = np.random.default_rng(0)
    manifests = {s: read_manifest(results / f"splits/size{s}.json") for s in config["sizes"]}
    for index, run in enumerate(runs):
        folder = (
            results / f"runs/size{run.size}/{run.backbone}/lr{float(run.lr)!r}_reg{float(run.reg)!r}/fold{run.fold}"
        )
        folder.mkdir(parents=True, exist_ok=True)
        manifest = manifests[run.size]
        dice = float(np.clip(0.85 - 0.4 * math.exp(-run.size / 300) + rng.normal(0, 0.05), 0.01, 0.99))
        obj = standin_metrics(run, config, meta["data_sha256"], dice, holdout_patients(manifest))
        (folder / "metrics.json").write_text(json.dumps(obj))
        epochs = Schedule.from_config(config["train"]).epoch_bounds()[1]
        lines = ["epoch,loss,val_loss,val_dice,lr,seconds,val_bce,steps"]
        lines += [f"{e},{1 / e},{1 / e},{dice},{run.lr},1.0,{1 / e},10" for e in range(1, epochs + 1)]
        (folder / "history.csv").write_text("\n".join(lines) + "\n")
        test = np.asarray(fold_indices(manifest, run.fold)["test"])
        rows = segmentation_rows(test, config["train"]["keep_segmentations"], config["seed"], run.size)
        truth = np.asarray(masks[rows])
        write_run_segmentations(folder / "segmentations.npz", rows, truth, rng.random(truth.shape) * (index % 2))


def standin_metrics(run: Run, config: dict, data_sha256: str, dice: float, holdout) -> dict:
    """A made-up metrics.json of `run` with DICE `dice` everywhere (docs/design.md §9)."""
    from unetcap.metrics import SCHEMA
    from unetcap.study import BACKBONES

    pixels = config["image_size"] ** 2
    patients = []
    for patient, rows in holdout:
        total = int(0.05 * pixels * len(rows))
        patients.append(
            {
                "patient": patient,
                "pixels": pixels * len(rows),
                "intersection": int(dice * total / 2),
                "total": total,
                "bce_sum": 0.1 * pixels * len(rows),
            }
        )
    score = {"bce": 0.1, "dice": dice}
    family, depth, _ = BACKBONES[run.backbone]
    epochs = Schedule.from_config(config["train"]).epoch_bounds()[1]
    return {
        "schema": SCHEMA,
        "run": {"size": run.size, "backbone": run.backbone, "family": family, "depth": depth, "lr": float(run.lr)}
        | {"reg": float(run.reg), "fold": run.fold, "repeat": run.fold // config["folds"], "seed": 0}
        | {"config_seed": config["seed"]},
        "status": "ok",
        "epochs": epochs,
        "best_epoch": epochs,
        "params": 1,
        "n_images": {"train": run.n_train, "val": run.n_val, "test": run.n_test, "holdout": run.n_holdout},
        "val": score,
        "test": score,
        "holdout": {**score, "patients": patients},
        "seconds": {"train": 1.0, "eval": 0.1},
        "provenance": {"data_sha256": data_sha256, "config_sha256": "", "versions": {}, "device": "CPU", "host": ""},
    }


def assumed_stages(config: dict, runs: list[Run], notes: Notes) -> dict:
    """The stages around training where they cannot run here (a real cohort's files; or a
    steps table, which times nothing here): from the README's measurements."""
    sampled = config["cohort"]["patients"] * config["images_per_patient"]
    before = SNAKEMAKE_START[0] + sampled / PREPARE_RATE[0] + len(config["sizes"]) * SNAKEMAKE_JOB[0]
    (fixed, per_run), source = SUMMARY
    after = fixed + per_run * len(runs)
    notes.assume(f"start-up {SNAKEMAKE_START[0]} s ({SNAKEMAKE_START[1]})")
    notes.assume(f"preparation of {sampled:,} images at {PREPARE_RATE[0]:.0f} images/s ({PREPARE_RATE[1]})")
    notes.assume(f"merge, sample_size, stats, figures: {fixed:.0f} s + {per_run} s per run ({source})")
    return {"before": before, "startup": SNAKEMAKE_START[0], "after": after, "jobs": {}}


# ----------------------------------------------------------------------------- the estimate
def run_parts(run: Run, costs: Costs, schedule: Schedule, epochs: int, checkpoint_every: float) -> dict:
    """Seconds of one run's parts, in the order they happen: "start" (process, import,
    build), "fit" (the first step's tracing, the steps, each epoch's validation predictions
    and weight copy, the checkpoints), "scoring" (validation, test, holdout pool, the kept
    segmentations); and "compute", the steps and predictions among them (what a GPU would
    do). The Snakemake job is the caller's."""
    b = schedule.batch_size
    steps = epochs * schedule.steps_per_epoch_of(run.n_train)
    val_calls, test_calls = math.ceil(run.n_val / b), math.ceil(run.n_test / b)
    holdout_calls = run.holdout_patients * math.ceil(run.images_per_patient / costs.holdout_batch)
    fit = steps * costs.step + costs.first_step + epochs * (val_calls * costs.predict + costs.weights)
    checkpoints = epochs if checkpoint_every <= 0 else min(epochs, int(fit // checkpoint_every))
    scoring = (val_calls + test_calls + 1) * costs.predict + holdout_calls * costs.predict_holdout
    predict_calls = (epochs + 1) * val_calls + test_calls + 1
    return {
        "start": costs.process + costs.import_ + costs.build,
        "fit": fit + costs.first_predict + checkpoints * costs.checkpoint,
        "scoring": scoring,
        "compute": steps * costs.step + predict_calls * costs.predict + holdout_calls * costs.predict_holdout,
    }


def run_seconds(run: Run, costs: Costs, schedule: Schedule, epochs: int, checkpoint_every: float) -> tuple:
    """(compute, overhead) seconds of one run (`run_parts`): overhead is everything that is
    not an optimizer step or a prediction."""
    parts = run_parts(run, costs, schedule, epochs, checkpoint_every)
    return parts["compute"], parts["start"] + parts["fit"] + parts["scoring"] - parts["compute"]


def makespan(durations: list[float], at_once: int) -> float:
    """Wall seconds of jobs started in the given order, each on the first free of `at_once`
    slots (the local executor with cores // threads training jobs at once)."""
    free = [0.0] * at_once
    for seconds in durations:
        slot = free.index(min(free))
        free[slot] += seconds
    return max(free)


def packed_seconds(pairs: list[tuple[float, float]], k: int, share: float = 1.0) -> float:
    """GPU seconds of runs given as (overhead, compute), k at a time on a GPU: the GPU is
    busy at least sum(compute) x s_k (s_k = `share`: 1 when the runs' compute is serialised,
    1/k when k run as fast as one), and each of the k lanes takes its share of every run's
    overhead + compute."""
    compute = sum(c for _, c in pairs)
    return max(compute * share, sum(o + c for o, c in pairs) / k)


@dataclass
class Plan:
    """What the planner found: the config, its runs, the costs and their sources."""

    config: dict
    runs: list[Run]
    schedule: Schedule
    costs: dict[str, Costs]
    job: float  # Snakemake's cost per job
    stages: dict
    cores: int
    at_once: int
    runs_per_gpu: int
    table: list[dict] | None
    notes: Notes
    load: float = 0.0  # mean 1-min load average while the planner measured
    burn: float = 0.0  # the load meter's loop, median seconds, while the planner measured


def totals(plan: Plan, epochs: int) -> dict:
    """The study's seconds at `epochs` epochs per run: here (local executor), and GPU seconds
    on a cluster without and with packing."""
    every = plan.config["train"]["checkpoint_every"]
    pairs, durations, steps = [], [], 0
    for run in plan.runs:
        compute, overhead = run_seconds(run, plan.costs[run.backbone], plan.schedule, epochs, every)
        pairs.append((overhead + plan.job, compute))
        durations.append(overhead + plan.job + compute)
        steps += epochs * plan.schedule.steps_per_epoch_of(run.n_train)
    training = makespan(durations, plan.at_once)
    k = plan.runs_per_gpu
    packed = 0.0
    for backbone in plan.config["backbones"]:
        share, _ = packing_share(plan.table, plan.config, backbone, k)
        packed += packed_seconds([p for p, r in zip(pairs, plan.runs) if r.backbone == backbone], k, share)
    return {
        "steps": steps,
        "training": training,
        "local": plan.stages["before"] + training + plan.stages["after"],
        "compute": sum(c for _, c in pairs),
        "overhead": sum(o for o, _ in pairs),
        "gpu": sum(o + c for o, c in pairs),
        "gpu_packed": packed,
    }


# ----------------------------------------------------------------------------- printing
def duration(seconds: float) -> str:
    """Seconds in the unit that reads best (s, min, h, days)."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def print_counts(plan: Plan) -> None:
    """The runs and their optimizer steps, per size, with the schedule's bounds."""
    from unetcap.splits import repeats_per_size

    c, s = plan.config, plan.schedule
    repeats = repeats_per_size(c["sizes"], c["repeats"])
    same = len(set(repeats.values())) == 1
    dims = [len(c["sizes"]), len(c["backbones"]), len(c["lrs"]), len(c["regs"]), c["folds"]]
    shape = " x ".join(map(str, dims)) + (f" x {repeats[c['sizes'][0]]}" if same else f" x repeats {repeats}")
    print(f"Runs: {len(plan.runs)} = sizes x backbones x lrs x regs x folds x repeats per size = {shape}")
    low, high = s.epoch_bounds()
    how = f"{s.steps_per_epoch} drawn batches" if s.steps_per_epoch else f"ceil(train images / {s.batch_size})"
    print(
        f"Schedule: an epoch is {how}; early stopping (patience {s.patience}, min_epochs {s.min_epochs}): "
        f"at least min(max_epochs, max(min_epochs, patience + 1)) = {low} epochs, at most max_epochs = {high}."
    )
    rows = []
    for size in c["sizes"]:
        mine = [r for r in plan.runs if r.size == size]
        per_epoch = sorted({s.steps_per_epoch_of(r.n_train) for r in mine})
        train = sorted({r.n_train for r in mine})
        rows.append(
            [
                size,
                len(mine),
                "/".join(map(str, train)),
                "/".join(map(str, sorted({r.n_val for r in mine}))),
                mine[0].n_test,
                mine[0].n_holdout,
                "/".join(map(str, per_epoch)),
                f"{low * per_epoch[0]:,}-{high * per_epoch[-1]:,}" if low != high else f"{high * per_epoch[-1]:,}",
            ]
        )
    header = ["size", "runs", "train images", "val", "test", "holdout", "steps/epoch", "steps per run"]
    print(table(header, rows))


def print_costs(plan: Plan) -> None:
    """Seconds per step and the per-run overhead of each encoder, and the per-job costs."""
    c = plan.config
    print(
        f"\nCosts per encoder ({c['image_size']} px, batch {c['train']['batch_size']}, "
        f"{c['train']['threads']} thread(s); holdout predictions {plan.costs[c['backbones'][0]].holdout_batch} "
        f"images a call; seconds):"
    )
    extra = {k: c["train"][k] for k in ("precision", "jit") if k in c["train"]}
    if extra:
        print(f"  with train settings {extra}")
    header = ["encoder", "step", "predict call", "holdout call", "import", "build", "first step +"]
    header += ["first predict +", "weight copy", "checkpoint", "process start/exit", "source"]
    rows = []
    for name, k in plan.costs.items():
        values = [k.step, k.predict, k.predict_holdout, k.import_, k.build, k.first_step, k.first_predict]
        values += [k.weights, k.checkpoint, k.process]
        rows.append([name, *(f"{v:.3g}" for v in values), k.source])
    print(table(header, rows))
    st = plan.stages
    print(
        f"\nSnakemake: {plan.job:.2f} s per job; start-up (dry run) {st['startup']:.1f} s. "
        f"Before training ({', '.join(STUDY_STAGES)}, with a start-up): {duration(st['before'])}; "
        f"after ({', '.join(SUMMARY_STAGES[:4])}): {duration(st['after'])}."
    )
    if st.get("stages"):
        jobs = ", ".join(f"{rule} {seconds:.0f} s" for rule, seconds in st["stages"].items())
        print(f"  each stage's jobs, Snakemake's start to finish (its log, whole seconds): {jobs}")
    if st["jobs"]:
        print(
            f"  check: Snakemake's dry run lists {st['jobs'].get('train', 0)} train jobs "
            f"(the planner: {len(plan.runs)})"
        )


def print_runs(plan: Plan, epochs: int) -> None:
    """Seconds of one run per size and encoder (at `epochs` epochs), overhead included."""
    every = plan.config["train"]["checkpoint_every"]
    rows = []
    for size in plan.config["sizes"]:
        cells = []
        for backbone in plan.config["backbones"]:
            run = next(r for r in plan.runs if r.size == size and r.backbone == backbone)
            compute, overhead = run_seconds(run, plan.costs[backbone], plan.schedule, epochs, every)
            whole = compute + overhead + plan.job
            cells.append(f"{duration(whole)} ({100 * (overhead + plan.job) / whole:.0f} %)")
        rows.append([size, *cells])
    print(f"\nOne run at {epochs} epochs, here (overhead's share in brackets):")
    print(table(["size", *plan.config["backbones"]], rows))


def hours(seconds: float) -> str:
    """Hours with about three significant digits."""
    h = seconds / 3600
    return f"{h:,.0f}" if h >= 100 else f"{h:.3g}"


def print_totals(plan: Plan) -> dict:
    """The totals at both bounds; returns the upper bound's (the one the headline uses)."""
    low, high = plan.schedule.epoch_bounds()
    k = plan.runs_per_gpu
    bounds = [("upper bound: every run trains max_epochs", high)]
    if low != high:
        bounds.append(("lower bound: every run stops at the earliest", low))
    print(f"\nTotals ({len(plan.runs)} runs; the headline uses the upper bound, {high} epochs a run):")
    found = {}
    for label, epochs in bounds:
        t = totals(plan, epochs)
        found[epochs] = t
        print(f"- {label} ({epochs} epochs, {t['steps']:,} optimizer steps in all):")
        print(
            f"  - this machine, local executor, --cores {plan.cores}: {plan.at_once} run(s) at once "
            f"(cores // train.threads): {duration(t['local'])} = before {duration(plan.stages['before'])} "
            f"+ training {duration(t['training'])} + after {duration(plan.stages['after'])}"
        )
        print(
            f"  - Slurm GPU cluster, one run per GPU job: {hours(t['gpu'])} GPU-hours "
            f"(compute {hours(t['compute'])} h + overhead {hours(t['overhead'])} h)"
        )
        print(f"  - {k} runs packed per GPU (runs of one encoder together): {hours(t['gpu_packed'])} GPU-hours")
    print_packing_model(plan)
    return found[high]


def print_packing_model(plan: Plan) -> None:
    """Where the GPU-hours' step times come from, and the packing model with its s_k."""
    k = plan.runs_per_gpu
    shares: dict[str, list[str]] = {}
    for backbone in plan.config["backbones"]:
        shares.setdefault(packing_share(plan.table, plan.config, backbone, k)[1], []).append(backbone)
    said = "; ".join(f"{share} for {', '.join(names)}" for share, names in shares.items())
    source = sorted({c.source for c in plan.costs.values()})
    print(
        f"  GPU-hours from step times {', '.join(source)}; packed: time per GPU = max(sum of compute x s_k, "
        f"sum of (overhead + compute) / k), k = {k}, s_k = {said}"
    )
    if not any("gpu" in s.lower() or "cuda" in s.lower() for s in source):
        print(
            "  (no GPU steps table given: these are hours of a job on this machine's CPU, a stand-in; "
            "a GPU step is many times faster, see docs/gpu/one_node.md)"
        )


# ----------------------------------------------------------------------------- the plan, and the check
class LoadMeter:
    """How busy the machine is while a block runs, sampled every 10 s: the 1-minute load
    average, and the seconds a fixed pure-Python loop takes (benchmarks/run.py's `_burn`,
    about 30 ms on a free core): the share of a core a process gets. Printed for the
    planner's measurements and for the study it checks: the two compare only when alike."""

    def __enter__(self) -> LoadMeter:
        import threading

        self.loads, self.burns = [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self._sample_once()
        self.thread.start()
        return self

    def _sample_once(self) -> None:
        self.loads.append(os.getloadavg()[0])
        t = time.perf_counter()
        bench._burn(BURN)
        self.burns.append(time.perf_counter() - t)

    def _sample(self) -> None:
        while not self.stop.wait(10):
            self._sample_once()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def mean(self) -> float:
        return sum(self.loads) / len(self.loads)

    @property
    def burn(self) -> float:
        """The loop's median seconds."""
        return sorted(self.burns)[len(self.burns) // 2]


BURN = 1_000_000  # iterations of the load meter's loop (about 30 ms on a free core)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_plan(args) -> Plan:
    """Count the runs, then measure (or read) what they and the stages around them cost."""
    config = load_config(args.configfile)
    runs = plan_runs(config)
    cores = args.cores or profile_cores()
    at_once = slots(cores, config["train"]["threads"])
    notes = Notes()
    rows = read_steps_table(args.steps_table, config["train"]["precision"]) if args.steps_table else None
    with LoadMeter() as load:
        if rows:
            costs, job, stages = table_costs(rows, config, notes), SNAKEMAKE_JOB[0], assumed_stages(config, runs, notes)
            notes.assume(f"Snakemake {job} s per job ({SNAKEMAKE_JOB[1]})")
            notes.assume(f"process start and exit {PROCESS[0]} s ({PROCESS[1]})")
        else:
            costs, job, stages = measure_here(args, config, runs, cores, at_once, notes)
    notes.assume(
        "every patient gives images_per_patient images (docs/design.md §5's counts); reading a run's "
        "images from the store is not counted"
    )
    notes.assume("Slurm: queueing, job start-up on a node and a GPU's CUDA start are not counted")
    schedule = Schedule.from_config(config["train"])
    return Plan(
        config, runs, schedule, costs, job, stages, cores, at_once, args.runs_per_gpu, rows, notes, load.mean, load.burn
    )


def measure_here(args, config: dict, runs: list[Run], cores: int, at_once: int, notes: Notes) -> tuple:
    """(costs per encoder, Snakemake's cost per job, the stages around training), measured
    on this machine: the stages of a phantom study run in a copy of the workflow first, as
    the study runs them; a real cohort's are assumed."""
    if config["cohort"]["source"] == "phantom":
        progress("running the stages before and after training in a temporary copy of the workflow ...")
        stages = measure_stages(args.configfile, config, runs, cores)
    else:
        stages = assumed_stages(config, runs, notes)
    progress("measuring Snakemake's cost per job ...")
    job = measure_snakemake_job(at_once)
    costs = {}
    for backbone in config["backbones"]:
        progress(f"probing {backbone} ({at_once} process(es) at once) ...")
        costs[backbone] = run_probes(config, backbone, at_once, args.steps)
    return costs, job, stages


def log_jobs(log: str) -> list[dict]:
    """Each finished job's rule, start and finish (epoch seconds) and, for a train job, its
    encoder, from Snakemake's log (its timestamps are whole seconds of local time)."""
    import datetime
    import re

    stamp = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
    jobs: dict[str, dict] = {}
    when, current = None, None
    for line in (text.strip() for text in log.splitlines()):
        if m := stamp.match(line):
            when, current = datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp(), None
        elif m := re.fullmatch(r"(?:local)?rule (\w+):", line):
            current = {"rule": m.group(1), "start": when}
        elif current is not None and line.startswith("jobid:"):
            jobs[line.split()[1]] = current
        elif current is not None and (m := re.search(r"backbone=([^,\s]+)", line)):
            current["backbone"] = m.group(1)
        elif (m := re.match(r"Finished jobid: (\d+) ", line)) and m.group(1) in jobs:
            jobs[m.group(1)]["end"] = when
    return [job for job in jobs.values() if "end" in job and job["start"] is not None]


def train_jobs(log: str) -> list[dict]:
    """The finished train jobs of a Snakemake log (`log_jobs`)."""
    return [job for job in log_jobs(log) if job["rule"] == "train" and "backbone" in job]


def stage_seconds(log: str) -> dict[str, float]:
    """Seconds of each rule's jobs (summed) in a Snakemake log, `all` left out."""
    found: dict[str, float] = {}
    for job in log_jobs(log):
        if job["rule"] != "all":
            found[job["rule"]] = found.get(job["rule"], 0.0) + job["end"] - job["start"]
    return found


def run_actual(configfiles, cores: int) -> dict:
    """The study from scratch in a temporary copy of the workflow (`snakemake --configfile
    ... --cores N`): its wall seconds, its phases and each encoder's mean run, from
    Snakemake's log."""
    from snakemake_run import copy_workflow

    with tempfile.TemporaryDirectory() as tmp, LoadMeter() as load:
        work = copy_workflow(Path(tmp))
        started = time.time()
        cmd = snakemake_cmd("--configfile", *workflow_configfiles(configfiles), "--cores", str(cores))
        seconds, result = timed_run(cmd, work, timeout=6 * 3600)
        check(result, "the study")
        parts = run_metrics(work / "results")
    jobs = train_jobs(result.stdout + "\n" + result.stderr)
    if not jobs:
        return {"local": seconds, "load": load.mean, "burn": load.burn, "parts": parts}
    first, last = min(j["start"] for j in jobs), max(j["end"] for j in jobs)
    runs: dict[str, list[float]] = {}
    for job in jobs:
        runs.setdefault(job["backbone"], []).append(job["end"] - job["start"])
    return {
        "local": seconds,
        "before": first - started,
        "training": last - first,
        "after": started + seconds - last,
        "runs": {backbone: sum(v) / len(v) for backbone, v in runs.items()},
        "load": load.mean,
        "burn": load.burn,
        "parts": parts,
    }


def run_metrics(results: Path) -> dict[str, dict[str, float]]:
    """Each encoder's mean seconds of a run's parts as the runs recorded them (metrics.json
    `seconds`): "train" (TensorFlow's import, the build and the fit) and "scoring" (the
    validation and test sets, the holdout pool)."""
    found: dict[str, list[dict]] = {}
    for path in results.rglob("runs/*/*/*/*/metrics.json"):
        obj = json.loads(path.read_text())
        sec = obj["seconds"]
        found.setdefault(obj["run"]["backbone"], []).append(
            {"train": sec["train"], "scoring": sec["eval"] + sec.get("holdout", 0.0)}
        )
    return {b: {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} for b, rows in found.items()}


def predicted_runs(plan: Plan) -> dict[str, dict[str, float]]:
    """Each encoder's mean run at the upper bound: "job" (all of it, Snakemake's share
    included), "train" (import, build and fit, as metrics.json's seconds.train counts them)
    and "scoring"."""
    epochs, every = plan.schedule.epoch_bounds()[1], plan.config["train"]["checkpoint_every"]
    found: dict[str, list[dict]] = {}
    for run in plan.runs:
        k = plan.costs[run.backbone]
        parts = run_parts(run, k, plan.schedule, epochs, every)
        job = parts["start"] + parts["fit"] + parts["scoring"] + plan.job
        found.setdefault(run.backbone, []).append(
            {"job": job, "train": parts["start"] - k.process + parts["fit"], "scoring": parts["scoring"]}
        )
    return {b: {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} for b, rows in found.items()}


def print_check(plan: Plan, predicted: dict, actual: dict) -> None:
    """Predicted against actual wall time: in all, per phase, and each encoder's mean run
    (its job from Snakemake's log, its parts from its metrics.json)."""
    rows = [("before training", plan.stages["before"], actual.get("before"))]
    rows += [("training", predicted["training"], actual.get("training"))]
    rows += [("after training", plan.stages["after"], actual.get("after"))]
    runs, parts = predicted_runs(plan), actual.get("parts", {})
    for b in plan.config["backbones"]:
        rows += [(f"{b}: a run's job (mean)", runs[b]["job"], actual.get("runs", {}).get(b))]
        rows += [(f"{b}: import + build + fit", runs[b]["train"], parts.get(b, {}).get("train"))]
        rows += [(f"{b}: final scoring", runs[b]["scoring"], parts.get(b, {}).get("scoring"))]
    rows += [("total", predicted["local"], actual["local"])]
    print(f"\nPredicted against actual (snakemake --cores {plan.cores}, from scratch in a temporary copy):")
    cells = [
        [name, duration(p), duration(a) if a is not None else "-", f"{p / a:.2f}" if a else "-"] for name, p, a in rows
    ]
    print(table(["", "predicted", "actual", "predicted / actual"], cells))
    ratio = predicted["local"] / actual["local"]
    verdict = "within" if abs(ratio - 1) <= 0.25 else "outside"
    print(
        f"Ratio predicted / actual: {ratio:.2f} ({verdict} the target of ±25 %). Phases and jobs from "
        "Snakemake's log (whole seconds)."
    )
    print(
        f"The machine while the planner measured / while the study ran: load average {plan.load:.1f} / "
        f"{actual['load']:.1f}; a fixed Python loop {1000 * plan.burn:.0f} / {1000 * actual['burn']:.0f} ms "
        "(median; both with this planner's own processes running): the two compare only when these are alike."
    )


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", default=[], help="config files laid over config/config.yaml")
    parser.add_argument("--cores", type=int, default=None, help="local cores (default: profiles/default's)")
    parser.add_argument(
        "--runs-per-gpu",
        type=int,
        default=int(os.environ.get(RUNS_PER_GPU_ENV, 4)),
        help=f"runs packed per GPU (default: ${RUNS_PER_GPU_ENV} or 4)",
    )
    parser.add_argument("--steps-table", help="CSV of step times measured elsewhere (nothing is timed here)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per probe after the first (default 3)")
    parser.add_argument("--actual", action="store_true", help="then run the study and compare")
    args = parser.parse_args(argv)
    if args.runs_per_gpu < 1 or (args.cores is not None and args.cores < 1) or args.steps < 1:
        parser.error("--runs-per-gpu, --cores and --steps must be at least 1")
    return args


def main(argv: list[str]) -> None:
    if argv[:1] == ["--probe"]:
        probe_main(json.loads(argv[1]))
        return
    args = parse_args(argv)
    plan = make_plan(args)
    files = " + ".join(["config/config.yaml", *args.configfile])
    print(f"Study `{plan.config['study']}` ({files}), planned on {os.uname().nodename} with --cores {plan.cores}\n")
    print_counts(plan)
    print_costs(plan)
    if not plan.table:
        print(
            f"Measured while the 1-min load average was {plan.load:.1f} on {len(os.sched_getaffinity(0))} CPUs and "
            f"a fixed Python loop took {1000 * plan.burn:.0f} ms (median; the probes' own processes included): "
            "timings scale with what else runs."
        )
    print_runs(plan, plan.schedule.epoch_bounds()[1])
    predicted = print_totals(plan)
    print("\nAssumptions:\n" + "\n".join(f"- {line}" for line in plan.notes.lines))
    if args.actual:
        progress("running the study ...")
        print_check(plan, predicted, run_actual(args.configfile, plan.cores))


if __name__ == "__main__":
    main(sys.argv[1:])
