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
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.curves import FAMILIES
from unetcap.analysis.sample_size import TARGETS, select_runs
from unetcap.analysis.table import model_frame, not_learned_text, read_metrics
from unetcap.common import atomic_path, named_paths
from unetcap.study import BACKBONES, FIGURE_ORDER

log = logging.getLogger(__name__)
# seaborn's categorical sizes make matplotlib log one INFO line per box plot: not news.
logging.getLogger("matplotlib.category").setLevel(logging.WARNING)

# the figures that pool runs, and so say how many of them did not learn
POOLED = ("figure2_left", "figure2_right", "figure3", "gam_partial", "sample_size")
FIGURES = ("figure2_left", "figure2_right", "figure3", "learning_curves", "gam_partial", "segmentations", "sample_size")
# The figures rule's named outputs: each figure's PNG under its name, its PDF under name_pdf.
FIGURE_OUTPUTS = tuple(key for name in FIGURES for key in (name, f"{name}_pdf"))
HISTORY_COLUMNS = ("size", "backbone", "lr", "reg", "fold", "epoch", "loss", "val_loss", "val_dice")
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


def _theme():
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


def _figure(figsize, nrows=1, ncols=1, **kw):
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


def _runs_scatter(ax, runs: pd.DataFrame, jitter, **style) -> None:
    """Runs as dots, those that did not learn as red crosses."""
    learned = runs["learned"].to_numpy(dtype=bool)
    x, y = runs["size"].to_numpy() * jitter, runs["DICE"].to_numpy()
    ax.scatter(x[learned], y[learned], linewidths=0, rasterized=True, **style)
    if (~learned).any():
        ax.scatter(x[~learned], y[~learned], marker="x", s=14, color="firebrick", linewidths=0.8, zorder=3)


def _size_labels(sizes) -> list[str]:
    return [f"{int(s):,}" for s in sizes]


def _top_legend(fig, ax, title, ncol):
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    fig.legend(handles, labels, title=title, loc="outside upper center", ncol=ncol, frameon=False)


# ---------------------------------------------------------------------------------------
# Figure 2
# ---------------------------------------------------------------------------------------


def figure2_left(data: pd.DataFrame, split: str = "test"):
    """DICE (top) and BCE (bottom) per dataset size, one box (median, IQR; whiskers 1.5
    IQR) per model. `data` is the merged metrics table with a `model` column."""
    import seaborn as sns

    models = model_names(data["backbone"].unique())
    sizes = sorted(data["size"].unique())
    colours = palette()
    with _theme():
        fig, axes = _figure((max(7.0, 1.5 * len(sizes) + 2), 7.5), 2, 1, sharex=True)
        for ax, column, label in (
            (axes[0, 0], f"{split}_dice", f"{split.capitalize()} DICE"),
            (axes[1, 0], f"{split}_bce", f"{split.capitalize()} BCE"),
        ):
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
                warnings.simplefilter("ignore", DeprecationWarning)
                sns.boxplot(
                    data=data,
                    x="size",
                    y=column,
                    hue="model",
                    order=sizes,
                    hue_order=models,
                    palette=colours,
                    fliersize=2,
                    linewidth=0.8,
                    ax=ax,
                )
            ax.set_ylabel(label)
            ax.set_xlabel("")
        axes[1, 0].set_xticks(range(len(sizes)), _size_labels(sizes))
        axes[1, 0].set_xlabel("Dataset size (images)")
        _top_legend(fig, axes[0, 0], "Model", len(models))
        axes[1, 0].get_legend().remove()
    return fig


def figure2_right(groups: pd.DataFrame, metric: str = "test_dice"):
    """Mean DICE per model and size, each with its Tukey HSD simultaneous 95 % interval
    (hsd_groups.csv); models whose intervals do not overlap differ significantly."""
    models = [m for m in model_names(groups["backbone"].unique())]
    sizes = sorted(groups["size"].unique())
    colours = palette()
    width = 0.8 / max(len(models), 1)
    with _theme():
        fig, axes = _figure((max(7.0, 1.5 * len(sizes) + 2), 4.8))
        ax = axes[0, 0]
        for j, model in enumerate(models):
            block = groups[groups["model"] == model].set_index("size").reindex(sizes)
            x = np.arange(len(sizes)) + (j - (len(models) - 1) / 2) * width
            err = block["halfwidth"].to_numpy(dtype=float)
            ax.errorbar(
                x,
                block["mean"],
                yerr=None if np.isnan(err).all() else err,
                fmt="o",
                color=colours[model],
                markersize=5,
                capsize=3,
                elinewidth=1.2,
                label=model,
            )
        ax.set_xticks(range(len(sizes)), _size_labels(sizes))
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.set_xlabel("Dataset size (images)")
        ax.set_ylabel(f"Mean {_metric_label(metric)} (HSD 95 % interval)")
        _top_legend(fig, ax, "Model", len(models))
    return fig


def _metric_label(metric: str) -> str:
    return {"test_dice": "test DICE", "val_dice": "validation DICE", "holdout_dice": "holdout DICE"}.get(metric, metric)


# ---------------------------------------------------------------------------------------
# Figure 3
# ---------------------------------------------------------------------------------------


def figure3(data: pd.DataFrame, predictions: pd.DataFrame, metric: str = "test_dice"):
    """Per model (one panel each): every run's DICE (grey dots), the observed mean per size
    (black bars) and the OLS's predicted mean DICE (averaged over the lr x reg grid) with its
    95 % interval, connected across sizes; hollow marks are sizes that were not trained."""
    models = model_names(data["backbone"].unique())
    colours = palette()
    ncols = min(3, len(models))
    nrows = math.ceil(len(models) / ncols)
    trained = sorted(set(data["size"]))
    rng = np.random.default_rng(0)  # jitter only: fixed, so the figure is reproducible
    with _theme():
        fig, axes = _figure((4.2 * ncols, 3.6 * nrows), nrows, ncols, sharex=True, sharey=True)
        for ax, model in zip(axes.flat, models):
            runs = data[data["model"] == model]
            jitter = np.exp(rng.uniform(-0.07, 0.07, len(runs)))
            _runs_scatter(ax, runs, jitter, s=5, color="0.6", alpha=0.5, label="runs")
            means = runs.groupby("size")["DICE"].mean()
            ax.scatter(
                means.index,
                means.to_numpy(),
                marker="_",
                s=220,
                color="black",
                linewidths=1.8,
                label="observed mean",
                zorder=3,
            )
            pred = predictions[predictions["model"] == model].sort_values("size")
            colour = colours[model]
            ax.fill_between(pred["size"], pred["low"], pred["high"], color=colour, alpha=0.25, linewidth=0)
            ax.plot(pred["size"], pred["predicted"], "-", color=colour, linewidth=1.6, zorder=4)
            done = pred[pred["trained"]]
            ax.plot(done["size"], done["predicted"], "o", color=colour, markersize=6, zorder=5, label="OLS prediction")
            new = pred[~pred["trained"]]
            ax.plot(
                new["size"],
                new["predicted"],
                "o",
                markerfacecolor="white",
                color=colour,
                markersize=6,
                markeredgewidth=1.5,
                zorder=5,
            )
            for size, value in zip(new["size"], new["predicted"]):
                ax.annotate(
                    f"{int(size):,}",
                    (size, value),
                    xytext=(4, -7),
                    textcoords="offset points",
                    ha="left",
                    va="top",
                    fontsize="x-small",
                    color="0.25",
                )
            ax.set_title(f"{model} ({_backbone_of(model)})")
            ax.set_xscale("log")
            ax.set_xticks(trained, _size_labels(trained))
            ax.minorticks_off()
            ax.tick_params(axis="x", labelrotation=45)
        _label_size_grid(axes, len(models), metric)
        fig.legend(
            handles=_figure3_legend(bool((~predictions["trained"]).any())),
            loc="outside upper center",
            ncol=5,
            frameon=False,
        )
    return fig


def _label_size_grid(axes, used: int, metric: str) -> None:
    """A grid of per-model panels against dataset size: unused panels hidden, the bottom row's
    x axes and the first column's y axes labelled."""
    for ax in axes.flat[used:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Dataset size (images, log scale)")
    for ax in axes[:, 0]:
        ax.set_ylabel(_metric_label(metric).capitalize().replace("dice", "DICE"))


def _figure3_legend(untrained: bool) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grey = "0.3"
    handles = [
        Line2D([], [], marker="o", linestyle="", color="0.6", markersize=4, label="runs"),
        Line2D(
            [], [], marker="_", linestyle="", color="black", markersize=14, markeredgewidth=1.8, label="observed mean"
        ),
        Line2D([], [], marker="o", color=grey, markersize=6, label="OLS prediction"),
        Patch(color=grey, alpha=0.25, label="OLS 95 % interval"),
    ]
    if untrained:
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="",
                color=grey,
                markerfacecolor="white",
                markeredgewidth=1.5,
                markersize=6,
                label="OLS, size not trained",
            )
        )
    return handles


def _backbone_of(model: str) -> str:
    return next(b for b, v in BACKBONES.items() if v.short == model)


# ---------------------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------------------


def read_histories(path) -> pd.DataFrame:
    """The merged per-epoch histories, checked for the columns the curves need."""
    path = Path(path)
    if not path.is_file():
        raise UnetcapError(f"{path}: the merged histories table is missing; run the merge rule first")
    table = pd.read_csv(path)
    missing = [c for c in HISTORY_COLUMNS if c not in table.columns]
    if missing:
        raise UnetcapError(f"{path}: missing column(s) {', '.join(missing)}")
    unknown = sorted(set(table["backbone"].astype(str)) - set(BACKBONES))
    if unknown:
        raise UnetcapError(f"{path}: unknown backbone(s) {', '.join(unknown)}")
    return table


def learning_curves(histories: pd.DataFrame):
    """Per model (columns) the median over runs, per epoch, of training loss, validation
    loss and validation DICE (rows), one line per dataset size; a run counts only for the
    epochs it trained (early stopping), so late epochs show the longer runs."""
    import seaborn as sns

    models = model_names(histories["backbone"].unique())
    sizes = sorted(histories["size"].unique())
    colours = dict(zip(sizes, sns.color_palette("viridis", len(sizes))))
    h = histories.assign(model=histories["backbone"].map(lambda b: BACKBONES[b].short))
    med = h.groupby(["model", "size", "epoch"])[["loss", "val_loss", "val_dice"]].median().reset_index()
    rows = (
        ("loss", "Training loss (BCE)", True),
        ("val_loss", "Validation loss (BCE)", True),
        ("val_dice", "Validation DICE", False),
    )
    with _theme():
        fig, axes = _figure((2.6 * len(models) + 1, 7.5), len(rows), len(models), sharex=True, sharey="row")
        for j, model in enumerate(models):
            for i, (col, label, logy) in enumerate(rows):
                ax = axes[i, j]
                for size in sizes:
                    block = med[(med["model"] == model) & (med["size"] == size)]
                    ax.plot(block["epoch"], block[col], color=colours[size], linewidth=1.3, label=f"{int(size):,}")
                if logy:
                    _log_axis(ax)
                if i == 0:
                    ax.set_title(model)
                if j == 0:
                    ax.set_ylabel(label)
                if i == len(rows) - 1:
                    ax.set_xlabel("Epoch")
        _top_legend(fig, axes[0, 0], "Dataset size (images); lines: median over runs", len(sizes))
    return fig


def _log_x(ax):
    """A log x axis labelled with plain numbers at 1, 2, 5 x 10^k."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _log_axis(ax):
    """A log y axis labelled with plain numbers, major ticks only."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------------------
# GAM partial dependence
# ---------------------------------------------------------------------------------------


def gam_partial(partial: pd.DataFrame):
    """One panel per GAM term (gam_partial.csv): the spline on dataset size as a curve with
    its 95 % band, factor terms as points with 95 % intervals. Each panel has its own y
    scale."""
    terms = list(dict.fromkeys(partial["term"]))
    colours = palette()
    ncols = min(4, max(len(terms), 1))
    nrows = max(1, math.ceil(len(terms) / ncols))
    with _theme():
        fig, axes = _figure((4.0 * ncols, 3.4 * nrows), nrows, ncols)
        for ax, term in zip(axes.flat, terms):
            block = partial[partial["term"] == term]
            if term.startswith(("s(", "l(")):  # the spline, or the line with too few sizes for one
                ax.fill_between(block["Dataset"], block["low"], block["high"], color="C0", alpha=0.25, linewidth=0)
                ax.plot(block["Dataset"], block["effect"], color="C0")
                _log_x(ax)
                ax.set_xlabel("Dataset size (images, log scale)")
            else:
                _factor_panel(ax, term, block, colours)
            ax.axhline(0, color="0.5", linewidth=0.8, zorder=0)
            ax.set_title(term)
            if ax in axes[:, 0]:
                ax.set_ylabel("Partial effect on DICE")
        for ax in axes.flat[len(terms) :]:
            ax.set_visible(False)
        if not terms:
            axes[0, 0].set_visible(True)
            axes[0, 0].text(0.5, 0.5, "GAM has no term", ha="center", va="center")
    return fig


def _level_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _factor_panel(ax, term, block, colours):
    """Points with intervals for a factor or an interaction of factors."""
    variables = [v for v in ("lr", "ls", "Family", "reg") if v in term]
    by_model = "ls" in variables and "Family" in variables
    if by_model:
        order = [m for m in model_names(_backbones(block)) if m in set(block["model"])]
        other = [v for v in variables if v not in ("ls", "Family")]
        groups = [None] if not other else sorted(block[other[0]].dropna().unique())
        width = 0.7 / len(groups)
        for g, level in enumerate(groups):
            sub = block if level is None else block[block[other[0]] == level]
            sub = sub.set_index("model").reindex(order)
            x = np.arange(len(order)) + (g - (len(groups) - 1) / 2) * width
            err = np.vstack([sub["effect"] - sub["low"], sub["high"] - sub["effect"]])
            kwargs = (
                {"color": "0.2"} if level is None else {"color": f"C{g}", "label": f"{other[0]} = {_level_text(level)}"}
            )
            ax.errorbar(x, sub["effect"], yerr=err, fmt="o", capsize=3, markersize=4, **kwargs)
        ax.set_xticks(range(len(order)), order)
        ax.set_xlabel("Model")
        if groups != [None]:
            low, high = ax.get_ylim()
            ax.set_ylim(low, high + 0.3 * (high - low))  # room for the legend above the marks
            ax.legend(
                loc="upper center",
                ncol=len(groups),
                fontsize="x-small",
                frameon=False,
                handletextpad=0.2,
                columnspacing=0.8,
            )
    else:
        var = variables[0]
        levels = list(block[var])
        err = np.vstack([block["effect"] - block["low"], block["high"] - block["effect"]])
        ax.errorbar(range(len(levels)), block["effect"], yerr=err, fmt="o", capsize=3, color="0.2")
        ax.set_xticks(range(len(levels)), [_level_text(v) for v in levels])
        ax.set_xlim(-0.5, len(levels) - 0.5)
        ax.set_xlabel(var)


def _backbones(block) -> list[str]:
    shorts = set(block["model"])
    return [b for b, v in BACKBONES.items() if v.short in shorts]


# ---------------------------------------------------------------------------------------
# Segmentations
# ---------------------------------------------------------------------------------------

TRUE_COLOUR, PREDICTED_COLOUR = "#00d000", "#ff00ff"


def shown_runs(kept: dict, metrics: pd.DataFrame, metric: str = "test_dice") -> pd.DataFrame:
    """The run whose kept segmentations stand for each (backbone, size): the lowest fold of
    the (lr, reg) with the best mean `metric` over its folds. Columns backbone, size, lr,
    reg, fold, index (the run's row in the merged segmentations)."""
    runs = pd.DataFrame({key: kept[key] for key in ("size", "backbone", "lr", "reg", "fold")})
    runs["index"] = range(len(runs))
    mean = metrics.groupby(["backbone", "size", "lr", "reg"], as_index=False)[metric].mean()
    best = mean.sort_values(metric, ascending=False, kind="stable").drop_duplicates(["backbone", "size"])
    chosen = best.merge(runs, on=["backbone", "size", "lr", "reg"]).sort_values("fold", kind="stable")
    return chosen.drop_duplicates(["backbone", "size"])[["backbone", "size", "lr", "reg", "fold", "index"]]


def segmentations(kept: dict, metrics: pd.DataFrame, metric: str = "test_dice", per_size: int = 2):
    """For every model (rows, the paper's order) at the smallest and the largest dataset size
    (columns, `per_size` kept test images each, the same images for every model): the image
    with the true (green) and the predicted (magenta) myocardium contour and the image's
    DICE. Each model and size is shown by one run (`shown_runs`)."""
    runs = shown_runs(kept, metrics, metric) if len(kept["rows"]) and kept["rows"].shape[1] else pd.DataFrame()
    if runs.empty:
        with _theme():
            fig, axes = _figure((5, 1.5))
            axes[0, 0].axis("off")
            axes[0, 0].text(
                0.5, 0.5, "No segmentations kept (config train.keep_segmentations is 0).", ha="center", va="center"
            )
        return fig
    sizes = sorted({int(runs["size"].min()), int(runs["size"].max())})
    backbones = [b for b in FIGURE_ORDER if b in set(runs["backbone"])]
    columns = []  # (size, store row) per column: images with myocardium first, in store order
    for size in sizes:
        first = runs[runs["size"] == size].iloc[0]
        rows = [int(r) for r in kept["rows"][first["index"]] if r >= 0]
        rows.sort(key=lambda r: (not kept["images"][r][1].any(), r))
        columns += [(size, r) for r in rows[:per_size]]
    with _theme():
        fig, axes = _figure((1.55 * len(columns) + 0.6, 1.6 * len(backbones) + 0.6), len(backbones), len(columns))
        for i, backbone in enumerate(backbones):
            for j, (size, row) in enumerate(columns):
                ax = axes[i, j]
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                image, truth = kept["images"][row]
                ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                match = runs[(runs["backbone"] == backbone) & (runs["size"] == size)]
                if truth.any():
                    ax.contour(truth, levels=[0.5], colors=TRUE_COLOUR, linewidths=0.8)
                if match.empty:
                    ax.set_title("no run", fontsize=7)
                    continue
                k = int(match.iloc[0]["index"])
                slot = list(kept["rows"][k]).index(row)
                predicted = kept["predicted"][k, slot]
                if predicted.any():
                    ax.contour(predicted, levels=[0.5], colors=PREDICTED_COLOUR, linewidths=0.8)
                ax.set_title(f"DICE {kept['dice'][k, slot]:.2f}", fontsize=7, pad=2)
                if j == 0:
                    ax.set_ylabel(BACKBONES[backbone].short)
                if i == len(backbones) - 1:
                    ax.set_xlabel(f"{size:,} images", fontsize=7)
        fig.suptitle("Test images: true (green) and predicted (magenta) myocardium", fontsize=9)
    return fig


# ---------------------------------------------------------------------------------------
# Sample size: learning curves
# ---------------------------------------------------------------------------------------


def sample_size(
    data: pd.DataFrame, curves: pd.DataFrame, answers: pd.DataFrame, targets=(), metric: str = "holdout_dice"
):
    """Per model (one panel each, the paper's order): the DICE of the runs the curves were
    fitted on (grey dots, log size), the chosen learning curve with its widened 95 % band
    (sample_size_curves.csv), solid over the trained sizes and dashed beyond the largest,
    the other families' curves as thin grey lines, and the target DICE values as dotted
    lines. A model without an answer says why (sample_size.csv)."""
    models = model_names(data["backbone"].unique())
    colours = palette()
    ncols = min(3, max(len(models), 1))
    nrows = max(1, math.ceil(len(models) / ncols))
    reasons = {r.model: r.reason for r in answers.itertuples() if r.status == "not answered"}
    rng = np.random.default_rng(0)  # jitter only: fixed, so the figure is reproducible
    sizes = sorted(set(data["size"]))
    top = max([*sizes, *curves["size"]]) if len(curves) else max(sizes)
    chosen = curves[curves["chosen"].astype(bool)] if len(curves) else curves
    with _theme():
        fig, axes = _figure((4.2 * ncols, 3.6 * nrows), nrows, ncols, sharex=True, sharey=True)
        for ax, model in zip(axes.flat, models):
            runs = data[data["model"] == model]
            jitter = np.exp(rng.uniform(-0.06, 0.06, len(runs)))
            _runs_scatter(ax, runs, jitter, s=8, color="0.5", alpha=0.6)
            colour = colours[model]
            block = chosen[chosen["model"] == model].sort_values("size") if len(chosen) else chosen
            if len(block):
                for _, other in curves[(curves["model"] == model) & ~curves["chosen"].astype(bool)].groupby("family"):
                    ax.plot(other["size"], other["dice"], "-", color="0.55", linewidth=0.7, zorder=3)
                inside = block[~block["extrapolated"].astype(bool)]
                beyond = block[block["size"] >= inside["size"].max()]
                ax.fill_between(block["size"], block["low"], block["high"], color=colour, alpha=0.25, linewidth=0)
                ax.plot(inside["size"], inside["dice"], "-", color=colour, linewidth=1.8, zorder=4)
                ax.plot(beyond["size"], beyond["dice"], "--", color=colour, linewidth=1.8, zorder=4)
            else:
                ax.text(
                    0.5,
                    0.5,
                    _wrap(reasons.get(model, "no curve"), 40),
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="0.2",
                    bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"},
                )
            for target in targets:
                ax.axhline(target, color="0.35", linestyle=":", linewidth=0.9, zorder=1)
            ax.set_title(f"{model} ({_backbone_of(model)})")
            ax.set_xscale("log")
            ax.set_ylim(top=1.02)  # DICE: a curve that never levels off leaves the panel at 1
            ax.set_xlim(min(sizes) / 1.3, top * 1.3)
            ax.set_xticks(sizes, _size_labels(sizes))
            ax.minorticks_off()
            ax.tick_params(axis="x", labelrotation=45)
        _label_size_grid(axes, len(models), metric)
        if targets:
            ax = axes[0, ncols - 1] if len(models) >= ncols else axes[0, 0]
            for target in targets:
                ax.annotate(
                    f"{target:g}",
                    (1.0, target),
                    xycoords=("axes fraction", "data"),
                    xytext=(3, 0),
                    textcoords="offset points",
                    ha="left",
                    va="center",
                    fontsize="x-small",
                    color="0.35",
                    annotation_clip=False,
                )
        family = chosen["family"].iloc[0] if len(chosen) else ""
        fig.legend(handles=_sample_size_legend(family), loc="outside upper center", ncol=3, frameon=False)
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _sample_size_legend(family: str) -> list:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grey = "0.3"
    form = FAMILIES[family].formula if family in FAMILIES else "no curve"
    return [
        Line2D([], [], marker="o", linestyle="", color="0.55", markersize=4, label="runs"),
        Line2D([], [], color=grey, linewidth=1.8, label=f"{form} (chosen by backtest)"),
        Line2D([], [], color=grey, linewidth=1.8, linestyle="--", label="beyond the largest size"),
        Patch(color=grey, alpha=0.25, label="95 % band, widened by the backtests"),
        Line2D([], [], color="0.55", linewidth=0.7, label="the other curve families"),
        Line2D([], [], color="0.35", linestyle=":", label="target DICE"),
    ]


# ---------------------------------------------------------------------------------------
# Everything, written
# ---------------------------------------------------------------------------------------


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
    from unetcap.segmentations import read_segmentations

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
    path = Path(path)
    if not path.is_file():
        raise UnetcapError(f"{path}: missing; the stats or sample_size rule writes it")
    return pd.read_csv(path)
