"""The two training backends side by side (config `train.backend`: tensorflow, pytorch).

    .venv/bin/python benchmarks/backends.py steps      # CPU step time per encoder and backend
    .venv/bin/python benchmarks/backends.py parity     # the table of docs/backends.md

steps   per encoder, the median train step and prediction of each backend at the demo's
        image size, batch, threads and training settings (config/demo.yaml), each in its own
        process, the two backends of an encoder one after the other (so that both see the
        same machine): writes docs/backends/steps_cpu.csv. Numbers depend on the processor.
parity  the demo trained by each backend (`snakemake --configfile config/demo.yaml` and
        `... config/demo.yaml config/pytorch.yaml`: results/demo/metrics.csv and
        results/demo+pytorch/metrics.csv, copied to docs/backends/ as the committed
        reference tables): mean test DICE per encoder and size for each backend, their
        difference with Welch's t-test within encoder x size, the seconds per step from
        steps_cpu.csv, and the paper's OLS with `Backend` as a factor on both tables pooled.
        Writes docs/backends.md and docs/backends/parity.csv (docs/rebuild.py rebuilds them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import run as bench  # noqa: E402  benchmarks/run.py: the probe's build and timings
from plan import training_settings  # noqa: E402  benchmarks/plan.py

from unetcap.analysis.formula import PAPER_OLS  # noqa: E402
from unetcap.analysis.linear import coefficient_table, fit_ols  # noqa: E402
from unetcap.analysis.table import model_frame  # noqa: E402
from unetcap.study import BACKBONES, FIGURE_ORDER  # noqa: E402

BACKENDS = ("tensorflow", "pytorch")
DOCS = ROOT / "docs/backends"
STEPS_CSV = DOCS / "steps_cpu.csv"
TABLES = {"tensorflow": DOCS / "metrics_tensorflow.csv", "pytorch": DOCS / "metrics_pytorch.csv"}
STEPS = 20  # timed steps per probe, after the first


def demo_settings() -> tuple[dict, dict]:
    """config/demo.yaml and its training settings (the planner's reading of them)."""
    demo = bench.load_config("demo.yaml")
    return demo, training_settings(demo)


def probe(spec: dict) -> None:
    """In a probe process: benchmarks/run.py's timings for one encoder and backend."""
    seconds, _, _ = bench.measure_network(
        spec["backbone"], spec["image_size"], spec["batch"], spec["threads"], STEPS, spec["settings"]
    )
    print(json.dumps(seconds), flush=True)


def measure(backbone: str, backend: str) -> dict:
    demo, settings = demo_settings()
    spec = {
        "backbone": backbone,
        "image_size": demo["image_size"],
        "batch": settings["batch_size"],
        "threads": settings["threads"],
        "settings": {**settings, "backend": backend},
    }
    done = subprocess.run(
        [sys.executable, __file__, "--probe", json.dumps(spec)], capture_output=True, text=True, env=bench.quiet_env()
    )
    if done.returncode:
        sys.exit(f"probe {backbone} on {backend} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steps() -> pd.DataFrame:
    demo, settings = demo_settings()
    rows = []
    for backbone in FIGURE_ORDER:
        for backend in BACKENDS:
            seconds = measure(backbone, backend)
            rows.append(
                {
                    "backbone": backbone,
                    "backend": backend,
                    "image_size": demo["image_size"],
                    "batch": settings["batch_size"],
                    "threads": settings["threads"],
                    **{k: round(seconds[k], 5) for k in ("import", "build", "first_step", "step", "predict")},
                }
            )
            print(f"{backbone:15s} {backend:10s} step {1000 * seconds['step']:7.1f} ms", flush=True)
    frame = pd.DataFrame(rows)
    DOCS.mkdir(parents=True, exist_ok=True)
    frame.to_csv(STEPS_CSV, index=False)
    return frame


def welch(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's two-sided t-test p-value (NaN when either side has fewer than 2 runs or no spread)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (np.var(a) == 0 and np.var(b) == 0):
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def parity_table(tables: dict[str, pd.DataFrame], step_times: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for backbone in FIGURE_ORDER:
        for size in sorted(tables["tensorflow"]["size"].unique()):
            cell = {
                b: t.loc[(t["backbone"] == backbone) & (t["size"] == size), "test_dice"].to_numpy()
                for b, t in tables.items()
            }
            step = step_times.set_index(["backbone", "backend"])["step"]
            rows.append(
                {
                    "model": BACKBONES[backbone].short,
                    "size": int(size),
                    "runs": f"{len(cell['tensorflow'])} / {len(cell['pytorch'])}",
                    "tensorflow": cell["tensorflow"].mean(),
                    "pytorch": cell["pytorch"].mean(),
                    "pytorch - tensorflow": cell["pytorch"].mean() - cell["tensorflow"].mean(),
                    "Welch p": welch(cell["pytorch"], cell["tensorflow"]),
                    "ms/step tensorflow": 1000 * step[(backbone, "tensorflow")],
                    "ms/step pytorch": 1000 * step[(backbone, "pytorch")],
                }
            )
    return pd.DataFrame(rows)


def pooled_ols(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The paper's OLS with `Backend` added, fitted on both tables pooled: its coefficient
    table (the analysis' own fit and table, docs/design.md §11)."""
    both = pd.concat([t.assign(train_backend=b) for b, t in tables.items()], ignore_index=True)
    fit = fit_ols(model_frame(both, "test_dice").data, PAPER_OLS + " + Backend")
    return coefficient_table(fit), fit


def markdown(frame: pd.DataFrame) -> str:
    def cell(column: str, value) -> str:
        if not isinstance(value, float):
            return str(value)
        if np.isnan(value):
            return ""
        if column.startswith("ms/step"):
            return f"{value:.0f}"
        return f"{value:+.3f}" if column.endswith("tensorflow") and " - " in column else f"{value:.3f}"

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += [
        "| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def parity(out: Path = ROOT / "docs") -> None:
    """docs/backends.md and docs/backends/parity.csv (under `out`) from the committed tables."""
    tables = {b: pd.read_csv(p) for b, p in TABLES.items()}
    step_times = pd.read_csv(STEPS_CSV)
    table = parity_table(tables, step_times)
    coef, fit = pooled_ols(tables)
    backend = coef.loc[coef["term"].str.startswith("Backend")].iloc[0]
    best = table.groupby("size")[["tensorflow", "pytorch"]].max().iloc[-1]
    steps = step_times.pivot(index="backbone", columns="backend", values="step").reindex(FIGURE_ORDER)
    first = step_times.iloc[0]
    text = REPORT_TEXT.format(
        table=markdown(table),
        term=backend["term"],
        estimate=backend["estimate"],
        low=backend["ci_low"],
        high=backend["ci_high"],
        p=backend["p"],
        formula=fit.formula,
        n=int(fit.results.nobs),
        best={b: f"{best[b]:.3f}" for b in BACKENDS},
        largest=int(table["size"].max()),
        largest_cells=", ".join(
            f"{r.model} at {r.size} ({r.diff:+.3f})"
            for r in table.rename(columns={"pytorch - tensorflow": "diff"})
            .assign(gap=lambda t: t["diff"].abs())
            .nlargest(3, "gap")
            .itertuples()
        ),
        lowest={b: f"{tables[b]['test_dice'].min():.2f}" for b in BACKENDS},
        speed=", ".join(f"{BACKBONES[b].short} {r:.2f}" for b, r in (steps["pytorch"] / steps["tensorflow"]).items()),
        machine=f"{first['threads']} thread(s), {first['image_size']} px, batch {first['batch']}",
    )
    (out / "backends").mkdir(parents=True, exist_ok=True)
    (out / "backends.md").write_text(text)
    table.to_csv(out / "backends" / "parity.csv", index=False, float_format="%.6g")
    print(text)


REPORT_TEXT = """# The two training backends side by side

Generated by `benchmarks/backends.py parity` (docs/rebuild.py rebuilds it) from the demo
trained by each backend on one machine: `snakemake --configfile config/demo.yaml` (TensorFlow,
segmentation-models 1.0.1) and `snakemake --configfile config/demo.yaml config/pytorch.yaml`
(PyTorch, segmentation_models_pytorch 0.6.0), their metrics.csv committed as
docs/backends/metrics_tensorflow.csv and metrics_pytorch.csv, and the CPU step times of
`benchmarks/backends.py steps` (docs/backends/steps_cpu.csv, {machine}, the demo's
settings, median of 20 steps). Both the DICE values and the times depend on the processor
(README).

Mean test DICE per encoder and size (runs: TensorFlow / PyTorch), the difference, Welch's
t-test of the two backends' runs within the cell (2 folds each: a weak test, read the
difference first), and the milliseconds of one training step:

{table}

Largest differences: {largest_cells}. The networks have the same layers (parameter counts
equal for the VGGs and EfficientNets) except where the ResNets put BatchNorm (before each
convolution in segmentation-models' pre-activation ResNets, after it in torchvision's); the
initial weights differ: each library keeps its own
initialisers (Keras' VGG: Glorot uniform; torchvision's VGG and ResNet: He normal; smp's
decoder: He uniform), one candidate reason why the VGGs learn faster in the demo's 100 steps
on PyTorch. Nothing here was tuned for either backend.

Best mean test DICE at {largest} images: TensorFlow {best[tensorflow]}, PyTorch {best[pytorch]};
lowest test DICE of any run: TensorFlow {lowest[tensorflow]}, PyTorch {lowest[pytorch]}.
PyTorch's step time over TensorFlow's, per encoder: {speed}.

Both tables pooled, the paper's OLS with the backend as a factor (`{formula}`, {n} runs):
`{term}` {estimate:+.4f} (95 % CI {low:+.4f} to {high:+.4f}, p = {p:.2g}), the mean
change in test DICE when PyTorch trains instead of TensorFlow, other terms held.
"""


def main(argv: list[str]) -> None:
    if argv[:1] == ["--probe"]:
        probe(json.loads(argv[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["steps", "parity"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="parity: where backends.md and backends/ go")
    args = parser.parse_args(argv)
    steps() if args.what == "steps" else parity(args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
