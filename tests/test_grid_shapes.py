"""Studies of any shape analyse (issue 24, item 7): the statistics (`write_analysis`), the
sample-size analysis (`write_sample_size`) and, for some shapes, the figures, on a generated
matrix of grid shapes: 1 to 6 encoders, 1 to 6 dataset sizes, 1 to 3 learning rates, 1 to 3
L2 values, 2 to 5 folds, runs dropped at random, runs diverged (some, or all of them).

The shapes are drawn by a seeded generator (`grid_shapes`) so that every count of each
dimension occurs at least once among the SHAPES shapes; each shape keeps at most MAX_RUNS runs
(the rest dropped at random: the GAM's λ search takes about a second per 100 runs). The only
outcomes allowed: every output written, or a UnetcapError when the table really cannot be
analysed, naming the reason (no run, a single run, DICE that does not vary); any other
exception, or a UnetcapError on a table that can be analysed, fails the test.

Measured: the module (12 shapes and the reported study) takes about 48 s of CPU on one core
(40 to 85 s of wall time on a busy two-core machine).
"""

from __future__ import annotations

import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic

from unetcap import UnetcapError, figures
from unetcap.analysis.run import write_analysis
from unetcap.analysis.sample_size_text import write_sample_size

SHAPES = 12
SEED = 24
MAX_RUNS = 96
# dataset sizes to draw from: the paper's, and sizes of real small studies (160 and 640: the
# study of the report)
SIZE_POOL = (100, 160, 200, 500, 640, 1000, 2500, 3000, 5000, 10000)
FIGURES_EVERY = 12  # the figures take 5 s or more: drawn for every twelfth shape (and the reported study)
# The reasons an analysis may refuse a table, each as its UnetcapError words it.
NO_ROWS = "no rows"
ONE_RUN = "at least 2 runs"
CONSTANT = "does not vary"
NOT_A_NUMBER = re.compile(r"\| *-?(nan|inf) *\||= -?(nan|inf)\b|\[-?(nan|inf),")  # printed in a cell or a note


@dataclass(frozen=True)
class Shape:
    seed: int
    backbones: tuple[str, ...]
    sizes: tuple[int, ...]
    lrs: tuple[float, ...]
    regs: tuple[float, ...]
    folds: int
    missing: float  # fraction of the runs dropped at random
    diverge: float  # chance that a run at lr 0.01 diverges (DICE 0)

    @property
    def id(self) -> str:
        runs = len(self.backbones) * len(self.sizes) * len(self.lrs) * len(self.regs) * self.folds
        diverged = "-all-diverged" if self.lrs == (0.01,) and self.diverge == 1 else ""
        return (
            f"e{len(self.backbones)}-s{len(self.sizes)}-lr{len(self.lrs)}-reg{len(self.regs)}-f{self.folds}"
            f"-{runs}runs-drop{self.missing:.2f}{diverged}"
        )


def grid_shapes(n: int = SHAPES, seed: int = SEED) -> list[Shape]:
    """`n` grid shapes, each dimension's counts spread so that every count occurs (n >= 6),
    the levels of each dimension drawn at random; a sixth of the shapes have every run
    diverged (one lr, 0.01, whose runs all diverge), a third every run at lr 0.01."""
    rng = random.Random(seed)

    def spread(values):
        out = [values[i % len(values)] for i in range(n)]
        rng.shuffle(out)
        return out

    counts = zip(
        spread(range(1, 7)),
        spread(range(1, 7)),
        spread(range(1, 4)),
        spread(range(1, 4)),
        spread(range(2, 6)),
        spread([0.0, 0.0, 0.2, 0.5, 0.9]),
        spread(["few", "few", "few", "lr 0.01", "lr 0.01", "all"]),
    )
    shapes = []
    for i, (n_enc, n_size, n_lr, n_reg, folds, drop, diverged) in enumerate(counts):
        names = synthetic.BACKBONE_NAMES
        backbones = tuple(sorted(rng.sample(names, n_enc), key=names.index))
        sizes = tuple(sorted(rng.sample(SIZE_POOL, n_size)))
        lrs = (0.01,) if diverged == "all" else tuple(sorted(rng.sample(synthetic.LRS, n_lr)))
        if diverged == "lr 0.01" and n_lr > 1 and 0.01 not in lrs:
            lrs = (0.01, *lrs[1:])
        regs = tuple(sorted(rng.sample(synthetic.REGS, n_reg)))
        runs = n_enc * n_size * len(lrs) * n_reg * folds
        missing = round(max(drop, 1 - MAX_RUNS / runs), 3)
        shapes.append(Shape(i, backbones, sizes, lrs, regs, folds, missing, 0.04 if diverged == "few" else 1.0))
    return shapes


def refusal(metrics: pd.DataFrame, varying: bool = True) -> str | None:
    """Why an analysis of `metrics` must refuse it (the words its UnetcapError uses), or None
    when it must write every output; `varying`: whether it needs DICE to vary (the models do,
    the sample-size curves do not)."""
    if metrics.empty:
        return NO_ROWS
    if len(metrics) < 2:
        return ONE_RUN
    if varying and metrics["test_dice"].nunique() == 1:
        return CONSTANT
    return None


def run_stage(stage, expected: str | None, outputs: dict) -> bool:
    """Run a writer; it must write every output of `outputs` (non-empty) or, when `expected`
    names a reason, raise a UnetcapError that says it. Returns whether it wrote."""
    if expected is None:
        written = stage()
        assert sorted(written) == sorted(outputs.values())
        assert all(p.is_file() and p.stat().st_size > 0 for p in written)
        return True
    with pytest.raises(UnetcapError) as err:
        stage()
    message = str(err.value)
    assert message.strip() and expected in message, message
    return False


def analyse_shape(metrics: pd.DataFrame, folder: Path, draw: bool, seed: int = 0) -> dict:
    """Every analysis of a metrics table written under `folder`; returns the stats outputs."""
    metrics_csv = folder / "in" / "metrics.csv"
    metrics_csv.parent.mkdir(parents=True)
    metrics.to_csv(metrics_csv, index=False)
    stats = synthetic.rule_outputs("stats", folder / "analysis")
    curves = synthetic.rule_outputs("sample_size", folder / "sample_size")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numerical warnings of tiny fits: what counts is the outcome
        wrote = run_stage(lambda: write_analysis(metrics_csv, stats), refusal(metrics), stats)
        curved = run_stage(
            lambda: write_sample_size(metrics_csv, curves, metric="test_dice", resamples=20),
            refusal(metrics, varying=False),
            curves,
        )
        if draw and wrote and curved:
            histories_csv = metrics_csv.with_name("histories.csv")
            synthetic.histories_table(metrics, seed).to_csv(histories_csv, index=False)
            synthetic.write_segmentations(metrics, metrics_csv.with_name("segmentations.npz"), seed)
            outputs = synthetic.rule_outputs("figures", folder / "figures")
            written = figures.write_figures(
                metrics_csv,
                histories_csv,
                stats["hsd_groups"],
                stats["predictions"],
                stats["gam_partial"],
                metrics_csv.with_name("segmentations.npz"),
                outputs,
                curves_path=curves["curves"],
                answers_path=curves["table_csv"],
                sample_size_metric="test_dice",
            )
            assert written == list(outputs.values()) and all(p.stat().st_size > 0 for p in written)
    return stats


SHAPE_LIST = grid_shapes()


def test_the_matrix_covers_every_count_of_each_dimension():
    assert len(SHAPE_LIST) == SHAPES
    assert {len(s.backbones) for s in SHAPE_LIST} == set(range(1, 7))
    assert {len(s.sizes) for s in SHAPE_LIST} == set(range(1, 7))
    assert {len(s.regs) for s in SHAPE_LIST} == set(range(1, 4))
    assert {s.folds for s in SHAPE_LIST} == set(range(2, 6))
    assert {len(s.lrs) for s in SHAPE_LIST} >= {1, 2, 3}
    assert any(s.lrs == (0.01,) and s.diverge == 1 for s in SHAPE_LIST)  # every run diverged
    assert any(s.missing > 0 for s in SHAPE_LIST)


@pytest.mark.parametrize("shape", SHAPE_LIST, ids=[s.id for s in SHAPE_LIST])
def test_every_grid_shape_writes_every_output_or_says_why(shape, tmp_path, record_property):
    metrics = synthetic.metrics_table(
        seed=shape.seed,
        missing=shape.missing,
        sizes=shape.sizes,
        backbones=shape.backbones,
        lrs=shape.lrs,
        regs=shape.regs,
        folds=shape.folds,
        diverge=shape.diverge,
    )
    record_property("shapes", SHAPES)
    record_property("runs", len(metrics))
    print(f"shape {shape.seed + 1} of {SHAPES}: {shape}, {len(metrics)} runs kept")
    stats = analyse_shape(metrics, tmp_path, draw=shape.seed % FIGURES_EVERY == 0, seed=shape.seed)
    if refusal(metrics) is None:
        for name in ("table1_md", "table2_md", "gam_md", "aic_md", "glm_md", "which_model_md"):  # not identified: blank
            assert not NOT_A_NUMBER.search(stats[name].read_text()), name


def test_the_reported_study_writes_tables_1_2_hsd_and_which_model(tmp_path):
    """The study of the report (one encoder, sizes 160 and 640, two folds: four runs) crashed
    in the GAM's term table; every output is written, the spline on two sizes a line."""
    metrics = synthetic.metrics_table(
        seed=7, sizes=(160, 640), backbones=("resnet18",), lrs=(0.001,), regs=(0.0001,), folds=2
    )
    assert len(metrics) == 4
    stats = analyse_shape(metrics, tmp_path, draw=True)
    for name in ("table1", "table2", "hsd", "which_model"):
        files = [p for key, p in stats.items() if key.startswith(name)]
        assert files and all(p.is_file() and p.stat().st_size > 0 for p in files), name
    assert "| R18 |" in stats["which_model_md"].read_text()
    assert "| log(Dataset) |" in stats["table1_md"].read_text()
    terms = pd.read_csv(stats["gam_csv"])
    assert terms["term"].tolist() == ["l(log(Dataset))", "intercept"]
    assert np.isfinite(terms["edf"]).all()
    assert "fitted as l(log(Dataset)), a straight line" in stats["notes"].read_text()
    saturated = metrics[metrics["fold"] == 0]  # one run per size: the OLS has no residual df
    stats = analyse_shape(saturated, tmp_path / "saturated", draw=False)
    for name in ("table1_md", "which_model_md"):
        assert not NOT_A_NUMBER.search(stats[name].read_text()), name
