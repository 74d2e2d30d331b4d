"""Learning curves, both kinds: the training curves from the per-epoch histories (loss and
validation DICE per epoch), and the sample-size curves (DICE against dataset size, the family
chosen by backtest, with its widened 95 % band and the target DICE values)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.curves import FAMILIES
from unetcap.figures.style import (
    backbone_of,
    label_size_grid,
    log_y,
    model_names,
    new_figure,
    palette,
    runs_scatter,
    size_labels,
    theme,
    top_legend,
)
from unetcap.study import BACKBONES

HISTORY_COLUMNS = ("size", "backbone", "lr", "reg", "fold", "epoch", "loss", "val_loss", "val_dice")


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
    with theme():
        fig, axes = new_figure((2.6 * len(models) + 1, 7.5), len(rows), len(models), sharex=True, sharey="row")
        for j, model in enumerate(models):
            for i, (col, label, logy) in enumerate(rows):
                ax = axes[i, j]
                for size in sizes:
                    block = med[(med["model"] == model) & (med["size"] == size)]
                    ax.plot(block["epoch"], block[col], color=colours[size], linewidth=1.3, label=f"{int(size):,}")
                if logy:
                    log_y(ax)
                if i == 0:
                    ax.set_title(model)
                if j == 0:
                    ax.set_ylabel(label)
                if i == len(rows) - 1:
                    ax.set_xlabel("Epoch")
        top_legend(fig, axes[0, 0], "Dataset size (images); lines: median over runs", len(sizes))
    return fig


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
    with theme():
        fig, axes = new_figure((4.2 * ncols, 3.6 * nrows), nrows, ncols, sharex=True, sharey=True)
        for ax, model in zip(axes.flat, models):
            runs = data[data["model"] == model]
            jitter = np.exp(rng.uniform(-0.06, 0.06, len(runs)))
            runs_scatter(ax, runs, jitter, s=8, color="0.5", alpha=0.6)
            block = chosen[chosen["model"] == model].sort_values("size") if len(chosen) else chosen
            if len(block):
                _curves_panel(ax, curves[curves["model"] == model], block, colours[model])
            else:
                _no_curve(ax, reasons.get(model, "no curve"))
            for target in targets:
                ax.axhline(target, color="0.35", linestyle=":", linewidth=0.9, zorder=1)
            ax.set_title(f"{model} ({backbone_of(model)})")
            ax.set_xscale("log")
            ax.set_ylim(top=1.02)  # DICE: a curve that never levels off leaves the panel at 1
            ax.set_xlim(min(sizes) / 1.3, top * 1.3)
            ax.set_xticks(sizes, size_labels(sizes))
            ax.minorticks_off()
            ax.tick_params(axis="x", labelrotation=45)
        label_size_grid(axes, len(models), metric)
        if targets:
            _target_labels(axes[0, ncols - 1] if len(models) >= ncols else axes[0, 0], targets)
        family = chosen["family"].iloc[0] if len(chosen) else ""
        fig.legend(handles=_sample_size_legend(family), loc="outside upper center", ncol=3, frameon=False)
    return fig


def _curves_panel(ax, curves: pd.DataFrame, block: pd.DataFrame, colour) -> None:
    """One model's curves (`curves`, every family): the other families as thin grey lines,
    the chosen one (`block`, sorted by size) in `colour` with its band, solid over the
    trained sizes and dashed from the largest on."""
    for _, other in curves[~curves["chosen"].astype(bool)].groupby("family"):
        ax.plot(other["size"], other["dice"], "-", color="0.55", linewidth=0.7, zorder=3)
    inside = block[~block["extrapolated"].astype(bool)]
    beyond = block[block["size"] >= inside["size"].max()]
    ax.fill_between(block["size"], block["low"], block["high"], color=colour, alpha=0.25, linewidth=0)
    ax.plot(inside["size"], inside["dice"], "-", color=colour, linewidth=1.8, zorder=4)
    ax.plot(beyond["size"], beyond["dice"], "--", color=colour, linewidth=1.8, zorder=4)


def _no_curve(ax, reason: str) -> None:
    """A panel without a curve says why, in a box in its middle."""
    ax.text(
        0.5,
        0.5,
        "\n".join(textwrap.wrap(reason, 40)),
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize="small",
        color="0.2",
        bbox={"facecolor": "white", "edgecolor": "0.7", "boxstyle": "round"},
    )


def _target_labels(ax, targets) -> None:
    """Each target DICE's value, right of the panel `ax`, at its dotted line."""
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


def _sample_size_legend(family: str) -> list:
    """The sample-size figure's legend, naming the chosen `family`'s formula."""
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
