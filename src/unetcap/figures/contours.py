"""Segmentations: kept test images with the true and the predicted myocardium contours, per
model at the smallest and the largest dataset size (segmentations.npz)."""

from __future__ import annotations

import pandas as pd

from unetcap.figures.style import new_figure, theme
from unetcap.study import BACKBONES, FIGURE_ORDER

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
        with theme():
            fig, axes = new_figure((5, 1.5))
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
    with theme():
        fig, axes = new_figure((1.55 * len(columns) + 0.6, 1.6 * len(backbones) + 0.6), len(backbones), len(columns))
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
