"""Figure 3 of the paper: the OLS's predicted DICE per model and size, connected, over the
observed runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from unetcap.figures.style import (
    backbone_of,
    label_size_grid,
    model_names,
    new_figure,
    palette,
    runs_scatter,
    size_labels,
    theme,
)


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
    with theme():
        fig, axes = new_figure((4.2 * ncols, 3.6 * nrows), nrows, ncols, sharex=True, sharey=True)
        for ax, model in zip(axes.flat, models):
            runs = data[data["model"] == model]
            jitter = np.exp(rng.uniform(-0.07, 0.07, len(runs)))
            runs_scatter(ax, runs, jitter, s=5, color="0.6", alpha=0.5, label="runs")
            pred = predictions[predictions["model"] == model].sort_values("size")
            _model_panel(ax, runs, pred, colours[model])
            ax.set_title(f"{model} ({backbone_of(model)})")
            ax.set_xscale("log")
            ax.set_xticks(trained, size_labels(trained))
            ax.minorticks_off()
            ax.tick_params(axis="x", labelrotation=45)
        label_size_grid(axes, len(models), metric)
        fig.legend(
            handles=_legend(bool((~predictions["trained"]).any())),
            loc="outside upper center",
            ncol=5,
            frameon=False,
        )
    return fig


def _model_panel(ax, runs: pd.DataFrame, pred: pd.DataFrame, colour) -> None:
    """One model's observed mean per size (black bars) and its OLS prediction `pred` (sorted
    by size) in `colour`: the 95 % band, the line, filled marks at trained sizes and hollow,
    labelled marks at the others."""
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


def _legend(untrained: bool) -> list:
    """Figure 3's legend: runs, observed mean, OLS prediction and interval (and the hollow
    mark when some size was not trained)."""
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
