"""The GAM's partial dependence (gam_partial.csv): one panel per term, the spline on dataset
size as a curve with its 95 % band, factor terms as points with 95 % intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from unetcap.figures.style import log_x, model_names, new_figure, palette, theme
from unetcap.study import BACKBONES


def gam_partial(partial: pd.DataFrame):
    """One panel per GAM term (gam_partial.csv): the spline on dataset size as a curve with
    its 95 % band, factor terms as points with 95 % intervals. Each panel has its own y
    scale."""
    terms = list(dict.fromkeys(partial["term"]))
    colours = palette()
    ncols = min(4, max(len(terms), 1))
    nrows = max(1, math.ceil(len(terms) / ncols))
    with theme():
        fig, axes = new_figure((4.0 * ncols, 3.4 * nrows), nrows, ncols)
        for ax, term in zip(axes.flat, terms):
            block = partial[partial["term"] == term]
            if term.startswith(("s(", "l(")):  # the spline, or the line with too few sizes for one
                ax.fill_between(block["Dataset"], block["low"], block["high"], color="C0", alpha=0.25, linewidth=0)
                ax.plot(block["Dataset"], block["effect"], color="C0")
                log_x(ax)
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
    """A factor level as a tick label: numbers in their shortest form."""
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
    """The backbones of the models in `block`."""
    shorts = set(block["model"])
    return [b for b, v in BACKBONES.items() if v.short in shorts]
