"""Benchmarks of the study's costs, measured side by side in one run; prints one table.

    .venv/bin/python benchmarks/run.py                 # everything (about 20-30 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py prepare dag     # chosen sections

Sections:
  prepare   LVSC-scale preparation (100 phantom patients, ~42,000 images, 10,000 sampled, 256 px):
            the project's cohort scan + preparation against (a) the floor, a plain loop that
            decodes exactly the sampled files with pydicom, and (b) a naive loop that decodes
            every short-axis file. The phantom is generated once into benchmarks/data/ (~6.5 GB).
  overhead  per encoder, at the demo's image size and at 256 px: import, model build and first
            step against a steady-state step; the fixed overhead's share of a demo run.
  dag       `snakemake -n` on the full paper config (1620 training runs and the rest).
  demo      wall time of the README's demo command from an empty results folder.
  memory    peak RSS of a training run per encoder at 256 px and the configured batch size.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
DATA = ROOT / "benchmarks" / "data"
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


def bench_prepare() -> None:
    import pydicom

    from unetcap.cohort import SHORT_AXIS, read_table, write_sample
    from unetcap.prepare import prepare_store

    cohort = lvsc_phantom()
    every = sorted(p for p in cohort.rglob("*") if SHORT_AXIS.match(p.name))
    warm(every)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_sample(cohort, f"{tmp}/sample.csv", 100, workers=2)
        prepare_store(f"{tmp}/sample.csv", f"{tmp}/prepared", 256, workers=2)
        project = time.perf_counter() - t
        sampled = list(read_table(f"{tmp}/sample.csv").source)
    n = len(sampled)

    t = time.perf_counter()
    for f in sampled:
        pydicom.dcmread(f).pixel_array
    floor = time.perf_counter() - t
    t = time.perf_counter()
    for f in every:
        pydicom.dcmread(f).pixel_array
    naive = time.perf_counter() - t
    row("prepare: cohort files / sampled images", f"{len(every)} / {n}")
    row("prepare: project (scan + decode + resize, 2 workers)", f"{n / project:.0f} images/s ({project:.1f} s)")
    row("prepare: floor (decode the sampled files only)", f"{n / floor:.0f} images/s ({floor:.1f} s)")
    row("prepare: naive (decode every file)", f"{n / naive:.0f} images/s ({naive:.1f} s)")
    row("prepare: project / floor", f"{floor / project:.2f}x", f">= 0.8x {verdict(floor / project >= 0.8)}")
    row("prepare: project / naive", f"{naive / project:.1f}x", f">= 5x {verdict(naive / project >= 5)}")


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
    row("dag: snakemake -n, paper config", f"{seconds:.1f} s for {counts.get('total', '?')} jobs "
        f"({counts.get('train', 0)} training runs)", f"<= 20 s {verdict(seconds <= 20 and result.returncode == 0)}")


def bench_demo() -> None:
    from snakemake_run import copy_workflow

    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(Path(tmp))
        t = time.perf_counter()
        result = subprocess.run([str(ROOT / ".venv/bin/snakemake"), "--configfile", "config/demo.yaml"],
                                cwd=work, capture_output=True, text=True)
        seconds = time.perf_counter() - t
        runs = len(list(Path(work, "results/runs").rglob("metrics.json")))
    ok = result.returncode == 0
    if not ok:
        print(result.stdout[-3000:], result.stderr[-3000:])
    row("demo: README demo command, empty results", f"{seconds / 60:.1f} min ({runs} training runs)",
        f"<= 10 min {verdict(ok and seconds <= 600)}")


SECTIONS = {"prepare": bench_prepare, "dag": bench_dag, "demo": bench_demo}


def main(argv: list[str]) -> None:
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
