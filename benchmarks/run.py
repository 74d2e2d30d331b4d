"""Benchmarks of the study's costs, measured side by side in one run; prints one table.

    .venv/bin/python benchmarks/run.py                 # everything (about 13 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py prepare dag     # chosen sections

Sections:
  prepare   LVSC-scale preparation (100 phantom patients, ~42,000 images, 10,000 sampled, 256 px):
            the project's cohort scan + preparation against (a) the floor, a plain loop that
            decodes exactly the sampled files with pydicom, and (b) a naive loop that decodes
            every short-axis file; per-image costs and peak memory. The phantom is generated
            once into benchmarks/data/ (~6.5 GB, a few minutes).
  nifti     ACDC-shaped preparation (100 phantom patients in the ACDC layout, 8-11 slices x ED
            and ES, about 1,900 labelled slices, 128 px): the project's cohort scan +
            preparation against a plain nibabel loop that loads every frame and label volume
            and takes its slices, both clocks started with nibabel imported (the project's
            process start and imports reported beside). Generated once into
            benchmarks/data/acdc (a minute or two).
  overhead  per encoder, at the demo's image size and at 256 px: import, model build and first
            step against a steady-state step; the fixed overhead's share of a demo run.
  dag       `snakemake -n` on the full paper config (1620 training runs and the rest).
  demo      wall time of the README's demo command from an empty results folder.
  memory    peak RSS of a training process per encoder at 256 px and the paper's batch size
            (model, optimizer, one batch: what config train.mem_mb covers).
  holdout   what scoring every run on the whole holdout pool costs at the paper's scale (256 px,
            20 holdout patients x 100 images): per encoder, the seconds per predicted image at
            the pool's inference batch against a training step at the paper's batch, and the
            pool's share of the smallest and the largest paper run (one probe process each).
  fit       the project's epoch loop (unetcap.train.loop.fit) against Keras' model.fit at the
            same settings (Adam, BCE + L2, batch 8, 400 images x 3 epochs, validation on 100
            after each epoch, early stopping with the best weights restored, no checkpoints),
            per encoder of FIT_ENCODERS at 64 and 128 px, each contender in its own process;
            the ratio fit / loop above 1 means the project's loop is the faster.
  precision the CPU step time of every train.precision (float32, mixed_float16,
            mixed_bfloat16), each with train.jit off and on, per encoder of
            PRECISION_ENCODERS, at the demo's image size, batch, threads and training settings
            (config/demo.yaml), each setting in its own process: the first step (tracing, XLA
            compilation) and the median step after a few warm-up steps, with the ratio to
            float32 without XLA (below 1: faster). Writes docs/gpu/precision_cpu.csv.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' helpers that run the workflow from a copy
DATA = ROOT / "benchmarks" / "data"
DEMO_RESULTS = "results/demo"  # the folder of the study config/demo.yaml runs (docs/design.md §7)
ROWS: list[tuple[str, str, str]] = []  # (measure, value, target / verdict)


def row(measure: str, value: str, target: str = "") -> None:
    ROWS.append((measure, value, target))
    print(f"  {measure}: {value} {target}", flush=True)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def lvsc_phantom() -> Path:
    """An LVSC-scale phantom cohort, generated once and kept between runs."""
    from unetcap.phantom import write_cohort

    path = DATA / "lvsc"
    if not path.is_dir():
        print("generating the LVSC-scale phantom (100 patients; a few minutes, ~6.5 GB) ...", flush=True)
        write_cohort(path, 100, seed=1)
    return path


def warm(files) -> None:
    """Read every file once so that every contender reads from the page cache."""
    for f in files:
        Path(f).read_bytes()


def prepare_in_process(code: str, cohort: Path, tmp: str) -> list:
    """Run a preparation script in its own process, as the rules run; its last line's JSON."""
    result = subprocess.run(
        [sys.executable, "-c", code, str(cohort), tmp], capture_output=True, text=True, env=quiet_env()
    )
    if result.returncode:
        sys.exit(f"preparation failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_prepare() -> None:
    import pydicom

    from unetcap.cohort.lvsc import SHORT_AXIS
    from unetcap.common import read_table

    cohort = lvsc_phantom()
    every = sorted(p for p in cohort.rglob("*") if SHORT_AXIS.match(p.name))
    warm(every)
    with tempfile.TemporaryDirectory() as tmp:
        # in its own process, as the rules run, for its peak memory
        code = (
            "import json, resource, sys, time\n"
            "from unetcap.cohort import write_sample\n"
            "from unetcap.prepare import prepare_store, store_paths\n"
            "cohort, tmp = sys.argv[1:]\n"
            "t = time.perf_counter()\n"
            "write_sample(cohort, f'{tmp}/sample.csv', 100, workers=2)\n"
            "prepare_store(f'{tmp}/sample.csv', *store_paths(f'{tmp}/prepared'), 256, workers=2)\n"
            "seconds = time.perf_counter() - t\n"
            "rss = [resource.getrusage(who).ru_maxrss / 1024\n"
            "       for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]\n"
            "print(json.dumps([seconds, *rss]))\n"
        )
        project, parent_mb, worker_mb = prepare_in_process(code, cohort, tmp)
        sample = read_table(f"{tmp}/sample.csv")
        sampled = list(sample.source)
    n = len(sampled)

    t = time.perf_counter()
    for f in sampled:
        _ = pydicom.dcmread(f).pixel_array
    floor = time.perf_counter() - t
    t = time.perf_counter()
    for f in every:
        _ = pydicom.dcmread(f).pixel_array
    naive = time.perf_counter() - t
    row("prepare: cohort files / sampled images", f"{len(every)} / {n}")
    row("prepare: project (scan + decode + resize, 2 workers)", f"{n / project:.0f} images/s ({project:.1f} s)")
    row("prepare: floor (decode the sampled files only)", f"{n / floor:.0f} images/s ({floor:.1f} s)")
    row("prepare: naive (decode every file)", f"{n / naive:.0f} images/s ({naive:.1f} s)")
    row("prepare: peak RSS", f"{parent_mb:,.0f} MB main process, {worker_mb:,.0f} MB largest worker")
    row("prepare: per image, one core (first 1000)", per_image_costs(sampled[:1000], list(sample["mask"][:1000])))
    row("prepare: project / floor", f"{floor / project:.2f}x", f">= 0.8x {verdict(floor / project >= 0.8)}")
    row("prepare: project / naive", f"{naive / project:.1f}x", f">= 5x {verdict(naive / project >= 5)}")


def acdc_phantom() -> Path:
    """An ACDC-shaped phantom cohort (ED and ES only), generated once and kept between runs."""
    from unetcap.phantom import write_phantom

    path = DATA / "acdc"
    if not path.is_dir():
        print("generating the ACDC-shaped phantom (100 patients, ED and ES) ...", flush=True)
        write_phantom(path, "acdc", patients=100, seed=3, slices=(8, 11), phases=(2, 2), matrix=(154, 256))
    return path


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def second_worker_speedup() -> float:
    """How much faster two worker processes burn a fixed CPU load than one, now: about 2 on
    two idle cores, about 1 when other processes hold a core (then a 2-worker stage cannot
    be faster than a 1-process loop by parallelism, only by doing less)."""
    from concurrent.futures import ProcessPoolExecutor

    seconds = []
    for workers in (1, 2):
        t = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_burn, [5_000_000] * 4))
        seconds.append(time.perf_counter() - t)
    return seconds[0] / seconds[1]


def bench_nifti(rounds: int = 3) -> None:
    import nibabel as nib
    import numpy as np

    cohort = acdc_phantom()
    volumes = sorted(cohort.rglob("*_frame*.nii.gz"))
    warm(volumes)
    # Like with like: each clock starts with nibabel imported (this process imported it
    # above, before the loop's clock), so neither clock holds the interpreter's start or the
    # imports; the forked workers inherit the parent's modules. That fixed cost is measured
    # on its own (the process's wall time less its clock) and reported beside. The two
    # contenders take turns, `rounds` times, and each keeps its best round: the cores are
    # shared, and a round that another process slowed says nothing about either.
    # CPU seconds (the workers' included) are reported too: unlike wall time they hardly
    # depend on what else the shared cores run.
    code = (
        "import json, resource, sys, time\n"
        "import nibabel\n"
        "from unetcap.cohort import write_sample\n"
        "from unetcap.prepare import prepare_store, store_paths\n"
        "cohort, tmp = sys.argv[1:]\n"
        "def cpu():\n"
        "    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF,\n"
        "               resource.RUSAGE_CHILDREN) for f in ('ru_utime', 'ru_stime'))\n"
        "t, c = time.perf_counter(), cpu()\n"
        "write_sample(cohort, f'{tmp}/sample.csv', 20, workers=2, source='acdc')\n"
        "store = prepare_store(f'{tmp}/sample.csv', *store_paths(f'{tmp}/prepared'), 128, workers=2, source='acdc')\n"
        "print(json.dumps([time.perf_counter() - t, cpu() - c, store['n_images']]))\n"
    )
    projects, project_cpu, fixed, loops, loop_cpu = [], [], [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            wall = time.perf_counter()
            project, cpu, n = prepare_in_process(code, cohort, tmp)
            fixed.append(time.perf_counter() - wall - project)
            projects.append(project)
            project_cpu.append(cpu)
        t, c = time.perf_counter(), time.process_time()
        loaded = 0
        for image in (v for v in volumes if not v.name.endswith("_gt.nii.gz")):
            pixels = np.asanyarray(nib.load(str(image)).dataobj)
            labels = np.asanyarray(nib.load(str(image).replace(".nii.gz", "_gt.nii.gz")).dataobj)
            loaded += sum(1 for z in range(pixels.shape[2]) if pixels[:, :, z].size and labels[:, :, z].size)
        loops.append(time.perf_counter() - t)
        loop_cpu.append(time.process_time() - c)
    ours, theirs = n / min(projects), loaded / min(loops)
    row("nifti: patients / labelled slices", f"{len({v.parent for v in volumes})} / {n} (loop: {loaded})")
    row(
        f"nifti: project (scan + read + resize to 128 px, 2 workers), best of {rounds}",
        f"{ours:.0f} images/s ({min(projects):.1f} s; rounds {', '.join(f'{s:.1f}' for s in projects)} s)",
    )
    row(
        f"nifti: plain nibabel loop (load every volume, take its slices), best of {rounds}",
        f"{theirs:.0f} images/s ({min(loops):.1f} s; rounds {', '.join(f'{s:.1f}' for s in loops)} s)",
    )
    row("nifti: project's process start + imports (on neither clock)", f"{min(fixed):.1f} s")
    row("nifti: project / loop (images/s)", f"{ours / theirs:.2f}x", f">= 0.8x {verdict(ours / theirs >= 0.8)}")
    row(
        "nifti: CPU per 1000 images, project (both workers) / loop",
        f"{min(project_cpu) / n * 1e3:.2f} s / {min(loop_cpu) / loaded * 1e3:.2f} s",
    )
    row(
        "nifti: second worker's speed-up on this machine now (CPU burn, 2 vs 1 process)",
        f"{second_worker_speedup():.2f}x",
        f"(load average {os.getloadavg()[0]:.1f})",
    )


def per_image_costs(sources: list[str], masks: list[str]) -> str:
    """Where the project's time goes, per image on one core, against the floor's decode."""
    import pydicom

    from unetcap.cohort.lvsc import read_dicom, read_mask
    from unetcap.prepare import prepare_image, prepare_mask

    def ms(fn, items) -> tuple[float, list]:
        t = time.perf_counter()
        out = [fn(item) for item in items]
        return (time.perf_counter() - t) / len(items) * 1e3, out

    floor, _ = ms(lambda f: pydicom.dcmread(f).pixel_array, sources)
    dicom, read = ms(read_dicom, sources)
    mask, decoded = ms(read_mask, masks)
    resize, _ = ms(lambda pair: (prepare_image(pair[0][1], 256), prepare_mask(pair[1], 256)), list(zip(read, decoded)))
    return (
        f"DICOM read + header check {dicom:.2f} ms, mask PNG {mask:.2f} ms, rescale + resize {resize:.2f} ms "
        f"(floor's dcmread + pixel_array {floor:.2f} ms)"
    )


def bench_dag() -> None:
    from snakemake_run import copy_workflow, job_counts, snakemake

    with tempfile.TemporaryDirectory() as tmp:
        lvsc = Path(tmp, "lvsc")
        for p in range(1, 101):
            (lvsc / f"DET{p:05d}01").mkdir(parents=True)
        work = copy_workflow(Path(tmp, "wf"))
        t = time.perf_counter()
        result = snakemake(work, "-n", "--config", f"cohort={{source: lvsc, path: {lvsc}}}")
        seconds = time.perf_counter() - t
    counts = job_counts(result.stdout)
    row(
        "dag: snakemake -n, paper config",
        f"{seconds:.1f} s for {counts.get('total', '?')} jobs ({counts.get('train', 0)} training runs)",
        f"<= 20 s {verdict(seconds <= 20 and result.returncode == 0)}",
    )


def bench_demo() -> None:
    from snakemake_run import copy_workflow

    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(Path(tmp))
        t = time.perf_counter()
        result = subprocess.run(
            [str(ROOT / ".venv/bin/snakemake"), "--configfile", "config/demo.yaml"],
            cwd=work,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t
        runs = len(list(Path(work, DEMO_RESULTS, "runs").rglob("metrics.json")))
    ok = result.returncode == 0
    if not ok:
        print(result.stdout[-3000:], result.stderr[-3000:])
    row(
        "demo: README demo command, empty results",
        f"{seconds / 60:.1f} min ({runs} training runs)",
        f"<= 10 min {verdict(ok and seconds <= 600)}",
    )


def timed(fn, *args) -> float:
    """Seconds of one call of a network's function, its result brought back to numpy."""
    import numpy as np

    t = time.perf_counter()
    np.asarray(fn(*args))
    return time.perf_counter() - t


def measure_network(
    backbone: str, image_size: int, batch: int, threads: int, steps: int = 3, settings: dict | None = None
) -> tuple[dict, object, object]:
    """The probe's timings in this process: import, build, first and median train step,
    first and median prediction of a batch, with the training settings `settings` (config
    `train`'s, the schema's defaults for the rest). Returns (seconds, the network, the batch)
    so that a caller can time more with the same network (benchmarks/plan.py does)."""
    t = time.perf_counter()
    import numpy as np

    from unetcap import train

    imported = time.perf_counter() - t  # numpy and the library, before the build step's own imports
    chosen = train.Settings.from_config(**{**(settings or {}), "threads": threads})
    net = train.build_network(backbone, image_size, 1e-3, 1e-4, 1, chosen)
    train_step, predict = net.train_step, net.predict
    seconds = {"import": imported + net.seconds["import"], "build": net.seconds["build"]}
    rng = np.random.default_rng(0)
    x = rng.random((batch, image_size, image_size, 1), dtype=np.float32)
    y = (x > 0.5).astype(np.float32)
    seconds["first_step"] = timed(train_step, x, y)
    seconds["step"] = float(np.median([timed(train_step, x, y) for _ in range(steps)]))
    seconds["first_predict"] = timed(predict, x)
    seconds["predict"] = float(np.median([timed(predict, x) for _ in range(steps)]))
    return seconds, net, x


def probe(backbone: str, image_size: int, batch: int, threads: int, steps: int = 3) -> None:
    """One process, one encoder: the fixed costs of a run against its steady state, and the
    process's peak RSS. Prints one JSON line (run as `run.py --probe ...`)."""
    seconds, _, _ = measure_network(backbone, image_size, batch, threads, steps)
    seconds["fixed"] = (
        seconds["import"]
        + seconds["build"]
        + seconds["first_step"]
        - seconds["step"]
        + seconds["first_predict"]
        - seconds["predict"]
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def run_probe(backbone: str, image_size: int, batch: int, threads: int) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--probe", backbone, str(image_size), str(batch), str(threads)],
        capture_output=True,
        text=True,
        env=quiet_env(),
    )
    if result.returncode:
        sys.exit(f"probe {backbone} {image_size} px failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def quiet_env() -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def demo_run(work: Path, backbone: str, settings: dict, size: int) -> tuple[float, dict]:
    """Wall seconds of one complete demo training run in its own process, and its metrics."""
    out = work / "bench" / backbone
    code = "import json, sys; from unetcap.train import train_run; train_run(**json.loads(sys.argv[1]))"
    arguments = {
        "images": f"{DEMO_RESULTS}/prepared/images.npy",
        "masks": f"{DEMO_RESULTS}/prepared/masks.npy",
        "store": f"{DEMO_RESULTS}/prepared/store.json",
        "manifest": f"{DEMO_RESULTS}/splits/size{size}.json",
        "metrics": str(out / "metrics.json"),
        "history": str(out / "history.csv"),
        "size": size,
        "backbone": backbone,
        "fold": 0,
        **settings,
    }
    t = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arguments)], cwd=work, capture_output=True, text=True, env=quiet_env()
    )
    seconds = time.perf_counter() - t
    if result.returncode:
        sys.exit(f"demo run {backbone} failed:\n{result.stderr[-3000:]}")
    return seconds, json.loads((out / "metrics.json").read_text())


def load_config(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / name).read_text())


def bench_overhead() -> None:
    """Fixed costs per encoder at the demo's size (against a whole demo run) and at 256 px."""
    from snakemake_run import copy_workflow, snakemake

    from unetcap.study import BACKBONES

    demo = load_config("demo.yaml")
    size, s, train = max(demo["sizes"]), demo["image_size"], demo["train"]
    settings = {"lr": demo["lrs"][0], "reg": demo["regs"][0], "seed": demo["seed"], **train}
    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(Path(tmp))
        result = snakemake(
            work,
            f"{DEMO_RESULTS}/prepared/store.json",
            f"{DEMO_RESULTS}/splits/size{size}.json",
            "--configfile",
            "config/demo.yaml",
            "--cores",
            "2",
        )
        if result.returncode:
            sys.exit(f"preparing the demo store failed:\n{result.stderr[-3000:]}")
        for backbone in BACKBONES:
            p = run_probe(backbone, s, train["batch_size"], train["threads"])["seconds"]
            wall, metrics = demo_run(work, backbone, settings, size)
            share = p["fixed"] / wall
            row(
                f"overhead {s} px: {backbone}",
                f"import {p['import']:.1f} + build {p['build']:.1f} + first step {p['first_step']:.2f} s "
                f"(steady {p['step']:.3f} s) + first predict {p['first_predict']:.2f} s = fixed {p['fixed']:.1f} s; "
                f"demo run {wall:.1f} s ({metrics['epochs']} epochs, {metrics['n_images']['train']} images): "
                f"{share:.0%}",
                f"<= 15% {verdict(share <= 0.15)}",
            )
    paper_size = load_config("config.yaml")["image_size"]
    for backbone in BACKBONES:
        q = paper_probe(backbone)["seconds"]
        row(
            f"overhead {paper_size} px: {backbone}",
            f"import {q['import']:.1f} + build {q['build']:.1f} + first step {q['first_step']:.1f} s "
            f"(steady {q['step']:.2f} s) + first predict {q['first_predict']:.1f} s = fixed {q['fixed']:.1f} s",
        )


@functools.cache
def paper_probe(backbone: str) -> dict:
    """The probe at the paper's settings (256 px, its batch size and threads): shared by the
    overhead and memory sections, run once per encoder."""
    paper = load_config("config.yaml")
    return run_probe(backbone, paper["image_size"], paper["train"]["batch_size"], paper["train"]["threads"])


def bench_memory() -> None:
    """Peak RSS of a training process per encoder at the paper's image size and batch size."""
    from unetcap.study import BACKBONES

    paper = load_config("config.yaml")
    peaks = {backbone: paper_probe(backbone)["peak_mb"] for backbone in BACKBONES}
    for backbone, peak in peaks.items():
        row(
            f"memory {paper['image_size']} px, batch {paper['train']['batch_size']}: {backbone}",
            f"peak RSS {peak:,.0f} MB",
        )
    row(
        "memory: largest",
        f"{max(peaks.values()):,.0f} MB",
        "(config train.mem_mb default: model, optimizer and one batch; the rule adds the run's arrays)",
    )


def bench_holdout() -> None:
    """Scoring the holdout pool at the paper's scale, from timed steps and predictions."""
    from unetcap.splits import holdout_count, plan_subset
    from unetcap.study import BACKBONES
    from unetcap.train.loop import INFERENCE_PIXELS

    paper = load_config("config.yaml")
    size, batch = paper["image_size"], paper["train"]["batch_size"]
    pool = holdout_count(paper["cohort"]["patients"], paper["holdout_fraction"]) * paper["images_per_patient"]
    inference = max(batch, INFERENCE_PIXELS // size**2)
    for backbone in BACKBONES:
        step = paper_probe(backbone)["seconds"]["step"]
        predict = run_probe(backbone, size, inference, paper["train"]["threads"])["seconds"]["predict"] / inference
        shares = []
        for n in (min(paper["sizes"]), max(paper["sizes"])):
            plan = plan_subset(n, paper["folds"], paper["images_per_patient"], paper["holdout_fraction"])
            train_images = plan.dev_images - plan.dev_images // paper["folds"]
            steps = -(-train_images // batch) * paper["train"]["max_epochs"]  # the paper's cap
            shares.append(f"{100 * pool * predict / (steps * step):.1f} % of a {n}-image run's {steps:,} steps")
        row(
            f"holdout pool {size} px ({pool:,} images): {backbone}",
            f"{predict * 1000:.0f} ms/image at batch {inference} = {pool * predict:.0f} s; step {step:.2f} s; "
            + ", ".join(shares),
        )


# The fit section's encoders: one of each kind of block that the loop could handle worse
# than Keras (plain convolutions, depthwise + squeeze-excite); add others to measure them.
FIT_ENCODERS = ("resnet18", "efficientnetb0")
FIT_SIZES = (64, 128)
FIT = {"train": 400, "val": 100, "epochs": 3, "batch": 8, "threads": 2, "lr": 1e-3, "reg": 1e-4}


def fit_probe(contender: str, backbone: str, image_size: int, n_train: int, n_val: int, epochs: int) -> None:
    """One process, one contender ("loop": the project's fit; "keras": model.fit), one
    encoder: seconds from the untraced model to the end of training (tracing, steps,
    validation, best weights), not import and build. Prints one JSON line."""
    if contender not in ("loop", "keras"):
        sys.exit(f"unknown contender {contender!r}: loop or keras")
    import numpy as np
    from tiny_store import ring_image

    from unetcap import train
    from unetcap.train.loop import Loop, fit, new_state

    settings = train.Settings.from_config(
        max_epochs=epochs, patience=epochs, batch_size=FIT["batch"], threads=FIT["threads"], checkpoint_every=1e9
    )
    net = train.build_network(backbone, image_size, FIT["lr"], FIT["reg"], 1, settings)
    model, optimizer = net.model, net.optimizer  # TensorFlow's (the contender "keras" is Keras' fit)
    rng = np.random.default_rng(0)
    pairs = [ring_image(rng, image_size, empty=i % 10 == 9) for i in range(n_train + n_val)]
    x = np.stack([image for image, _ in pairs])[..., None]
    y = np.stack([mask for _, mask in pairs])[..., None]
    t = time.perf_counter()
    if contender == "loop":
        data = train.RunData(
            x[:n_train], y[:n_train], x[n_train:], y[n_train:], x[:0], y[:0], np.zeros(0, np.int64), image_size, "", {}
        )
        with tempfile.TemporaryDirectory() as tmp:
            loop = Loop(net, data, settings, seed=1, checkpoint=Path(tmp) / "checkpoint")
            state = new_state("benchmark", FIT["lr"])
            fit(loop, state, None, t)
        epochs_run = state["epoch"]
    else:
        import tensorflow as tf

        model.compile(optimizer=optimizer, loss=tf.keras.losses.BinaryCrossentropy())
        stop = tf.keras.callbacks.EarlyStopping(patience=epochs, restore_best_weights=True)
        history = model.fit(
            x[:n_train],
            y[:n_train].astype(np.float32),
            batch_size=FIT["batch"],
            epochs=epochs,
            validation_data=(x[n_train:], y[n_train:].astype(np.float32)),
            shuffle=True,
            callbacks=[stop],
            verbose=0,
        )
        epochs_run = len(history.history["loss"])
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "epochs": epochs_run, "steps": int(optimizer.iterations.numpy())}))


def run_fit_probe(
    contender: str,
    backbone: str,
    image_size: int,
    n_train: int = FIT["train"],
    n_val: int = FIT["val"],
    epochs: int = FIT["epochs"],
) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--fit-probe",
            contender,
            backbone,
            str(image_size),
            str(n_train),
            str(n_val),
            str(epochs),
        ],
        capture_output=True,
        text=True,
        env=quiet_env(),
    )
    if result.returncode:
        sys.exit(f"fit probe {contender} {backbone} {image_size} px failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_fit() -> None:
    """The project's loop against model.fit, per encoder and image size, side by side."""
    for backbone in FIT_ENCODERS:
        for size in FIT_SIZES:
            loop, keras = run_fit_probe("loop", backbone, size), run_fit_probe("keras", backbone, size)
            if loop["steps"] != keras["steps"]:
                sys.exit(
                    f"fit {backbone} {size} px: the loop took {loop['steps']} steps, model.fit "
                    f"{keras['steps']}: not the same settings"
                )
            ratio = keras["seconds"] / loop["seconds"]
            row(
                f"fit {size} px: {backbone}",
                f"loop {loop['seconds']:.1f} s, model.fit {keras['seconds']:.1f} s "
                f"({loop['epochs']} epochs, {loop['steps']} steps each): fit / loop {ratio:.2f}x",
                f">= 1x {verdict(ratio >= 1)}",
            )


# The precision section: the fit section's two kinds of encoder, every precision with XLA
# off and on, the demo's step (config/demo.yaml), `warmup` steps after the first untimed.
PRECISION_ENCODERS = FIT_ENCODERS
PRECISION_SETTINGS = tuple((p, jit) for p in ("float32", "mixed_float16", "mixed_bfloat16") for jit in (False, True))
PRECISION = {"warmup": 3, "steps": 20}
PRECISION_CSV = ROOT / "docs" / "gpu" / "precision_cpu.csv"
PRECISION_COLUMNS = ("encoder", "precision", "jit", "first_step_s", "ms_per_step", "ratio_to_float32")


def precision_probe(backbone: str, precision: str, jit: bool, warmup: int, steps: int) -> None:
    """One process, one encoder at one precision and XLA setting, built by the trainer's
    build step at the demo's image size, batch, threads and training settings: seconds of
    the first step (tracing, XLA compilation), then `warmup` untimed steps, then the median
    of `steps` timed ones (each ends when its loss is on the host, as in the epoch loop).
    Prints one JSON line."""
    import numpy as np
    from tiny_store import ring_image

    from unetcap import train

    demo = load_config("demo.yaml")
    size, batch = demo["image_size"], demo["train"]["batch_size"]
    settings = train.Settings.from_config(**{**demo["train"], "precision": precision, "jit": jit})
    net = train.build_network(backbone, size, demo["lrs"][0], demo["regs"][0], 1, settings)
    rng = np.random.default_rng(0)
    pairs = [ring_image(rng, size, empty=i % 10 == 9) for i in range(4 * batch)]
    x = np.stack([image for image, _ in pairs])[..., None]
    y = np.stack([mask for _, mask in pairs])[..., None].astype(np.float32)

    def step(k: int) -> float:
        at = (k % 4) * batch
        t = time.perf_counter()
        float(net.train_step(x[at : at + batch], y[at : at + batch]))
        return time.perf_counter() - t

    first = step(0)
    for k in range(1, 1 + warmup):
        step(k)
    timed = [step(k) for k in range(1 + warmup, 1 + warmup + steps)]
    print(
        json.dumps({"first_step": first, "step": float(np.median(timed)), "steps": steps, "threads": settings.threads})
    )


def run_precision_probe(backbone: str, precision: str, jit: bool, warmup: int, steps: int) -> dict:
    arguments = [backbone, precision, str(int(jit)), str(warmup), str(steps)]
    result = subprocess.run(
        [sys.executable, __file__, "--precision-probe", *arguments], capture_output=True, text=True, env=quiet_env()
    )
    if result.returncode:
        sys.exit(f"precision probe {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_precision(
    encoders=PRECISION_ENCODERS,
    settings=PRECISION_SETTINGS,
    warmup: int = PRECISION["warmup"],
    steps: int = PRECISION["steps"],
    out: Path = PRECISION_CSV,
) -> None:
    """Every precision and XLA setting side by side, per encoder; the table to `out` (CSV)."""
    table = []
    for backbone in encoders:
        baseline = None
        for precision, jit in settings:
            probe = run_precision_probe(backbone, precision, jit, warmup, steps)
            ms = 1000 * probe["step"]
            baseline = ms if (precision, jit) == ("float32", False) else baseline
            ratio = ms / baseline if baseline else float("nan")
            table.append((backbone, precision, jit, round(probe["first_step"], 2), round(ms, 1), round(ratio, 2)))
            row(
                f"precision {backbone} {precision}{' + XLA' if jit else ''}",
                f"{ms:.1f} ms/step ({ratio:.2f}x float32), first step {probe['first_step']:.1f} s",
                f"(median of {steps} after {warmup} warm-up, {probe['threads']} thread(s))",
            )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PRECISION_COLUMNS)
        writer.writerows(table)
    print(f"  wrote {out}", flush=True)


SECTIONS = {
    "prepare": bench_prepare,
    "nifti": bench_nifti,
    "overhead": bench_overhead,
    "dag": bench_dag,
    "demo": bench_demo,
    "memory": bench_memory,
    "fit": bench_fit,
    "holdout": bench_holdout,
    "precision": bench_precision,
}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--probe"]:
        backbone, image_size, batch, threads = argv[1], *map(int, argv[2:5])
        probe(backbone, image_size, batch, threads)
        return
    if argv[:1] == ["--fit-probe"]:
        contender, backbone, image_size, n_train, n_val, epochs = argv[1], argv[2], *map(int, argv[3:7])
        fit_probe(contender, backbone, image_size, n_train, n_val, epochs)
        return
    if argv[:1] == ["--precision-probe"]:
        backbone, precision, jit, warmup, steps = argv[1], argv[2], *map(int, argv[3:6])
        precision_probe(backbone, precision, bool(jit), warmup, steps)
        return
    if argv[:1] == ["--precision-section"]:  # ENCODER,... PRECISION:JIT,... WARMUP STEPS OUT.csv
        settings = [(p, bool(int(jit))) for p, jit in (item.split(":") for item in argv[2].split(","))]
        bench_precision(argv[1].split(","), settings, int(argv[3]), int(argv[4]), Path(argv[5]))
        return
    chosen = argv or list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    for name in chosen:
        print(f"[{name}]", flush=True)
        SECTIONS[name]()
    width = max(len(m) for m, _, _ in ROWS)
    print("\n" + "\n".join(f"{m:<{width}}  {v:<40} {t}" for m, v, t in ROWS))


if __name__ == "__main__":
    main(sys.argv[1:])
