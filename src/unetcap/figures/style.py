"""What every figure shares: the models' names, order and colours, the theme, a new figure,
saving it byte-reproducibly, the runs that did not learn, and the axes and legends several
figures draw alike.

Models appear in the paper's order (B0, B5, R18, R50, V16, V19) with one colour pair per
family (light: short, dark: long). Every figure is written as PNG and PDF with fixed
metadata, so the same tables give byte-identical files.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from unetcap.analysis.table import not_learned_text
from unetcap.common import atomic_path
from unetcap.study import BACKBONES, FIGURE_ORDER

# seaborn's categorical sizes make matplotlib log one INFO line per box plot: not news.
logging.getLogger("matplotlib.category").setLevel(logging.WARNING)

DPI = 150
# No date, software version or host in the files: a rebuild is byte-identical.
PNG_METADATA = {"Software": None}
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None}


def model_names(backbones) -> list[str]:
    """The short names of `backbones`, in the paper's figure order."""
    present = set(backbones)
    return [BACKBONES[b].short for b in FIGURE_ORDER if b in present]


def palette() -> dict[str, tuple]:
    """Colour per short model name: a light/dark pair per family."""
    import seaborn as sns

    colours = sns.color_palette("Paired", 6)
    return {BACKBONES[b].short: colours[i] for i, b in enumerate(FIGURE_ORDER)}


def backbone_of(model: str) -> str:
    """The backbone whose short name is `model`."""
    return next(b for b, v in BACKBONES.items() if v.short == model)


def theme():
    """The figures' style, applied only inside the `with` block (no global state)."""
    import contextlib

    import matplotlib as mpl
    import seaborn as sns

    stack = contextlib.ExitStack()
    stack.enter_context(sns.axes_style("whitegrid"))
    stack.enter_context(sns.plotting_context("notebook", font_scale=0.85))
    stack.enter_context(
        mpl.rc_context({"svg.hashsalt": "unetcap", "pdf.fonttype": 42, "figure.dpi": 100, "savefig.dpi": DPI})
    )
    return stack


def new_figure(figsize, nrows=1, ncols=1, **kw):
    """A figure of `figsize` inches with a grid of axes (always 2-d), laid out constrained."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save(fig, png, pdf) -> list[Path]:
    """Write the figure to the paths `png` and `pdf` (each atomically)."""
    written = []
    for path, ext, metadata in ((png, "png", PNG_METADATA), (pdf, "pdf", PDF_METADATA)):
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, metadata=metadata, dpi=DPI)
        written.append(path)
    return written


def flag_not_learned(fig, count: int) -> None:
    """A figure that pools runs says how many of them did not learn (crosses where it draws
    runs one by one)."""
    if count:
        fig.supxlabel(
            f"{not_learned_text(count)}: drawn as red crosses where runs are drawn", fontsize="small", color="firebrick"
        )


def runs_scatter(ax, runs: pd.DataFrame, jitter, **style) -> None:
    """Runs as dots, those that did not learn as red crosses."""
    learned = runs["learned"].to_numpy(dtype=bool)
    x, y = runs["size"].to_numpy() * jitter, runs["DICE"].to_numpy()
    ax.scatter(x[learned], y[learned], linewidths=0, rasterized=True, **style)
    if (~learned).any():
        ax.scatter(x[~learned], y[~learned], marker="x", s=14, color="firebrick", linewidths=0.8, zorder=3)


def size_labels(sizes) -> list[str]:
    """Dataset sizes as tick labels (thousands separated)."""
    return [f"{int(s):,}" for s in sizes]


def metric_label(metric: str) -> str:
    """The words for a metric column on an axis."""
    return {"test_dice": "test DICE", "val_dice": "validation DICE", "holdout_dice": "holdout DICE"}.get(metric, metric)


def top_legend(fig, ax, title, ncol):
    """The legend of `ax` moved above the figure, in `ncol` columns."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fig.legend(handles, labels, title=title, loc="outside upper center", ncol=ncol, frameon=False)


def label_size_grid(axes, used: int, metric: str) -> None:
    """A grid of per-model panels against dataset size: unused panels hidden, the bottom row's
    x axes and the first column's y axes labelled."""
    for ax in axes.flat[used:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Dataset size (images, log scale)")
    for ax in axes[:, 0]:
        ax.set_ylabel(metric_label(metric).capitalize().replace("dice", "DICE"))


def log_x(ax):
    """A log x axis labelled with plain numbers at 1, 2, 5 x 10^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def log_y(ax):
    """A log y axis labelled with plain numbers, major ticks only."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
