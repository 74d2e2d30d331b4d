"""Rebuild every generated file under docs/ from what the repository commits, or check that
none is stale. From the repository root:

    .venv/bin/python docs/rebuild.py            # rewrite them (about 3 min on 2 cores)
    .venv/bin/python docs/rebuild.py --check    # list the stale ones; exit 1 if there are any

tests/test_docs.py runs the check. What it rebuilds, each from committed inputs only, the
same bytes on any machine (tables and figures depend on the merged tables, not on training):
- docs/showcase/: Figures 2 (left) and 3, the learning curves, the segmentations and Table 2,
  by the workflow's own `analysis` target over the showcase study's committed tables
  (config/showcase.yaml; docs/showcase/metrics.csv, histories.csv, segmentations.npz);
- docs/learning_curve/: Figure 3, the learning curves and the sample-size backtest tables of
  the reference study, the same way (config/learning_curve.yaml);
- docs/learning/pilot.csv: `benchmarks/learning.py pilot` on the committed pilot
  (docs/learning_curve/pilot_partial/) against the committed reference study;
- docs/bad_input/damage.md, damage.csv: `benchmarks/damage.py` (compared without its
  timings and the source line, which change with every run);
- docs/backends.md, docs/backends/parity.csv: `benchmarks/backends.py parity` on the
  committed tables of the demo trained by each backend and the committed CPU step times
  (docs/backends/metrics_*.csv, steps_cpu.csv, which training and timing made).

Not rebuilt here, because training made them and training numerics on CPU differ between
processors: docs/demo/ (the demo's figures, `snakemake --configfile config/demo.yaml`) and
docs/learning/ apart from pilot.csv (`benchmarks/learning.py`, docs/learning.md says which
section writes which file). Their commands are beside each of them in README.md and
docs/learning.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WORKFLOW_PARTS = ("Snakefile", "config", "workflow", "profiles", "envs")
ANALYSIS = ("--allowed-rules", "sample_size", "stats", "figures", "analysis")
FORCE = ("--forcerun", "sample_size", "stats", "figures")

# study: (its committed tables, {file under docs/<study>/: file under results/<study>/})
STUDIES = {
    "showcase": (
        ("metrics.csv", "histories.csv", "segmentations.npz"),
        {
            "figure2_left.png": "figures/figure2_left.png",
            "figure3.png": "figures/figure3.png",
            "sample_size.png": "figures/sample_size.png",
            "segmentations.png": "figures/segmentations.png",
            "table2_anova.md": "analysis/table2_anova.md",
        },
    ),
    "learning_curve": (
        ("metrics.csv", "histories.csv", "holdout.csv", "segmentations.npz"),
        {
            "figure3.png": "figures/figure3.png",
            "sample_size.png": "figures/sample_size.png",
            "sample_size_backtest.csv": "analysis/sample_size_backtest.csv",
            "sample_size_families.csv": "analysis/sample_size_families.csv",
        },
    ),
}


def run(cmd: list[str], cwd: Path) -> None:
    """Run `cmd`; stop with its output's tail when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")


def study(name: str, work: Path) -> dict[Path, Path]:
    """The study's analysis rebuilt by the workflow in `work`: {docs file: rebuilt file}."""
    tables, files = STUDIES[name]
    for part in WORKFLOW_PARTS:
        src, dest = ROOT / part, work / part
        if not dest.exists():
            shutil.copytree(src, dest) if src.is_dir() else shutil.copy2(src, dest)
    results = work / "results" / name
    results.mkdir(parents=True)
    for table in tables:
        shutil.copy2(DOCS / name / table, results / table)
    config = f"config/{name}.yaml"
    run(
        [sys.executable, "-m", "snakemake", "analysis", "--configfile", config, "--cores", "2", *ANALYSIS, *FORCE], work
    )
    return {DOCS / name / doc: results / built for doc, built in files.items()}


def pilot(work: Path) -> dict[Path, Path]:
    """docs/learning/pilot.csv from the committed pilot and reference study."""
    out = work / "learning"
    out.mkdir()
    pilot_dir, full_dir = DOCS / "learning_curve" / "pilot_partial", DOCS / "learning_curve"
    script = ROOT / "benchmarks" / "learning.py"
    run(
        [sys.executable, str(script), "pilot", "--pilot", str(pilot_dir), "--full", str(full_dir), "--out", str(out)],
        ROOT,
    )
    return {DOCS / "learning" / "pilot.csv": out / "pilot.csv"}


def damage(work: Path) -> dict[Path, Path]:
    """docs/bad_input/damage.md and .csv from benchmarks/damage.py."""
    out = work / "bad_input"
    run([sys.executable, str(ROOT / "benchmarks" / "damage.py"), "--out", str(out)], ROOT)
    return {DOCS / "bad_input" / name: out / name for name in ("damage.md", "damage.csv")}


def backends(work: Path) -> dict[Path, Path]:
    """docs/backends.md and docs/backends/parity.csv from the committed tables of the demo
    trained by each backend and the committed step times (benchmarks/backends.py parity)."""
    run([sys.executable, str(ROOT / "benchmarks" / "backends.py"), "parity", "--out", str(work)], ROOT)
    return {
        DOCS / "backends.md": work / "backends.md",
        DOCS / "backends" / "parity.csv": work / "backends" / "parity.csv",
    }


def comparable(path: Path) -> bytes:
    """What must not change in a generated file: all of it, except damage's timings, source and
    the site-packages folder in its warnings' file names."""
    # a warning's text names the file that raised it, under this machine's virtual environment
    data = re.sub(rb"[^\s'\"]*/site-packages/", b"<site-packages>/", path.read_bytes())
    if path.name == "damage.csv":
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        return repr([{k: v for k, v in row.items() if k != "seconds"} for row in rows]).encode()
    if path.name == "damage.md":
        text = re.sub(r"source \S+, (\d+ cases) in [\d.]+ s", r"\1", data.decode())
        return re.sub(r"- run time: [\d.]+ s", "- run time", text).encode()
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare, write nothing; exit 1 when a file is stale")
    parser.add_argument("parts", nargs="*", default=["showcase", "learning_curve", "pilot", "damage", "backends"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="docs-rebuild-") as tmp:
        built: dict[Path, Path] = {}
        for part in args.parts:
            work = Path(tmp) / part
            work.mkdir()
            built |= (
                study(part, work)
                if part in STUDIES
                else {"pilot": pilot, "damage": damage, "backends": backends}[part](work)
            )
        stale = [doc for doc, new in built.items() if not doc.is_file() or comparable(doc) != comparable(new)]
        for doc in stale:
            print(f"{'stale' if args.check else 'rewritten'}: {doc.relative_to(ROOT)}")
            if not args.check:
                shutil.copy2(built[doc], doc)
        print(f"{len(built)} generated files under docs/, {len(stale)} {'stale' if args.check else 'rewritten'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
