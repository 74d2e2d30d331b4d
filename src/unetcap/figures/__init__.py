"""The study's figures (docs/design.md §13), from the merged tables and the statistics' files.

- Figure 2 left: DICE and BCE per dataset size, one box (median, IQR) per model;
- Figure 2 right: mean DICE per model and size with the Tukey HSD 95 % intervals;
- Figure 3: the OLS's predicted DICE per model and size, connected, over the observed runs;
- learning curves from the per-epoch histories;
- the GAM's partial dependence per term;
- segmentations: kept test images with true and predicted myocardium contours;
- sample size: each model's learning curve (the family chosen by backtest) with its widened
  95 % band over the runs it was fitted on, the other families, and the target DICE values.

Every figure that pools runs says how many did not learn (`flag_not_learned`).

Models appear in the paper's order (B0, B5, R18, R50, V16, V19) with one colour pair per
family (light: short, dark: long). Every figure is written as PNG and PDF with fixed
metadata, so the same tables give byte-identical files.

One module per concern: `style` (names, colours, theme, saving, the axes several figures
share), `figure2`, `figure3`, `curves` (the training curves and the sample-size curves),
`partial` (the GAM), `contours` (the segmentations); this file draws them all
(`write_figures`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.sample_size import TARGETS, select_runs
from unetcap.analysis.table import model_frame, read_metrics
from unetcap.common import named_paths
from unetcap.figures.contours import PREDICTED_COLOUR, TRUE_COLOUR, segmentations, shown_runs
from unetcap.figures.curves import HISTORY_COLUMNS, learning_curves, read_histories, sample_size
from unetcap.figures.figure2 import figure2_left, figure2_right
from unetcap.figures.figure3 import figure3
from unetcap.figures.partial import gam_partial
from unetcap.figures.style import DPI, PDF_METADATA, PNG_METADATA, flag_not_learned, model_names, palette, save
from unetcap.segmentations import read_segmentations
from unetcap.study import BACKBONES

__all__ = [
    "BACKBONES",
    "DPI",
    "FIGURES",
    "FIGURE_OUTPUTS",
    "HISTORY_COLUMNS",
    "PDF_METADATA",
    "PNG_METADATA",
    "POOLED",
    "PREDICTED_COLOUR",
    "TRUE_COLOUR",
    "figure2_left",
    "figure2_right",
    "figure3",
    "flag_not_learned",
    "gam_partial",
    "learning_curves",
    "model_names",
    "palette",
    "read_histories",
    "sample_size",
    "save",
    "segmentations",
    "shown_runs",
    "write_figures",
]

log = logging.getLogger(__name__)

# the figures that pool runs, and so say how many of them did not learn
POOLED = ("figure2_left", "figure2_right", "figure3", "gam_partial", "sample_size")
FIGURES = ("figure2_left", "figure2_right", "figure3", "learning_curves", "gam_partial", "segmentations", "sample_size")
# The figures rule's named outputs: each figure's PNG under its name, its PDF under name_pdf.
FIGURE_OUTPUTS = tuple(key for name in FIGURES for key in (name, f"{name}_pdf"))


def write_figures(
    metrics_path,
    histories_path,
    groups_path,
    predictions_path,
    partial_path,
    segmentations_path,
    outputs: Mapping[str, object],
    metric: str = "test_dice",
    curves_path=None,
    answers_path=None,
    targets=TARGETS,
    runs: str = "all",
    sample_size_metric: str = "holdout_dice",
) -> list[Path]:
    """Draw every figure of FIGURES to the paths `outputs` names (the figures rule's named
    outputs: FIGURE_OUTPUTS -> path) from the merged tables (metrics.csv,
    histories.csv, segmentations.npz) and the statistics' files (hsd_groups.csv,
    predictions.csv, gam_partial.csv, and sample_size_curves.csv and sample_size.csv,
    by default beside hsd_groups.csv). `runs`, `targets` and `sample_size_metric` are the
    sample-size analysis's."""
    paths = named_paths(outputs, FIGURE_OUTPUTS, "figures")
    metrics = read_metrics(metrics_path)
    metrics = metrics.assign(model=metrics["backbone"].map(lambda b: BACKBONES[b].short))
    frame = model_frame(metrics, metric).data
    groups, predictions, partial = (_read(p) for p in (groups_path, predictions_path, partial_path))
    histories = read_histories(histories_path)
    here = Path(groups_path).parent
    curves = _read(curves_path or here / "sample_size_curves.csv")
    answers = _read(answers_path or here / "sample_size.csv")
    fitted = select_runs(metrics, sample_size_metric, runs)
    split = metric.split("_")[0]
    written = []
    for name, draw in (
        ("figure2_left", lambda: figure2_left(metrics, split)),
        ("figure2_right", lambda: figure2_right(groups, metric)),
        ("figure3", lambda: figure3(frame, predictions, metric)),
        ("learning_curves", lambda: learning_curves(histories)),
        ("gam_partial", lambda: gam_partial(partial)),
        ("segmentations", lambda: segmentations(read_segmentations(segmentations_path), metrics, metric)),
        ("sample_size", lambda: sample_size(fitted, curves, answers, targets, sample_size_metric)),
    ):
        log.info("drawing %s", name)
        fig = draw()
        if name in POOLED:
            flag_not_learned(fig, int((~(fitted if name == "sample_size" else frame)["learned"]).sum()))
        written += save(fig, paths[name], paths[f"{name}_pdf"])
    return written


def _read(path) -> pd.DataFrame:
    """A table of the statistics (stats or sample_size rule), or an error naming its rule."""
    path = Path(path)
    if not path.is_file():
        raise UnetcapError(f"{path}: missing; the stats or sample_size rule writes it")
    return pd.read_csv(path)
