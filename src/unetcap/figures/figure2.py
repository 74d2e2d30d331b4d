"""Figure 2 of the paper: left, DICE and BCE per dataset size, one box (median, IQR) per
model; right, mean DICE per model and size with the Tukey HSD 95 % intervals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from unetcap.figures.style import metric_label, model_names, new_figure, palette, size_labels, theme, top_legend


def figure2_left(data: pd.DataFrame, split: str = "test"):
    """DICE (top) and BCE (bottom) per dataset size, one box (median, IQR; whiskers 1.5
    IQR) per model. `data` is the merged metrics table with a `model` column."""
    import seaborn as sns

    models = model_names(data["backbone"].unique())
    sizes = sorted(data["size"].unique())
    colours = palette()
    with theme():
        fig, axes = new_figure((max(7.0, 1.5 * len(sizes) + 2), 7.5), 2, 1, sharex=True)
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
        axes[1, 0].set_xticks(range(len(sizes)), size_labels(sizes))
        axes[1, 0].set_xlabel("Dataset size (images)")
        top_legend(fig, axes[0, 0], "Model", len(models))
        axes[1, 0].get_legend().remove()
    return fig


def figure2_right(groups: pd.DataFrame, metric: str = "test_dice"):
    """Mean DICE per model and size, each with its Tukey HSD simultaneous 95 % interval
    (hsd_groups.csv); models whose intervals do not overlap differ significantly."""
    models = [m for m in model_names(groups["backbone"].unique())]
    sizes = sorted(groups["size"].unique())
    colours = palette()
    width = 0.8 / max(len(models), 1)
    with theme():
        fig, axes = new_figure((max(7.0, 1.5 * len(sizes) + 2), 4.8))
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
        ax.set_xticks(range(len(sizes)), size_labels(sizes))
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.set_xlabel("Dataset size (images)")
        ax.set_ylabel(f"Mean {metric_label(metric)} (HSD 95 % interval)")
        top_legend(fig, ax, "Model", len(models))
    return fig
