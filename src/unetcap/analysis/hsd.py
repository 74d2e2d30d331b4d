"""Tukey HSD of mean DICE over model x dataset-size groups (docs/design.md §11), with each
group's simultaneous 95 % interval (Hochberg and Tamhane: two groups differ when their
intervals do not overlap), computed by statsmodels' `pairwise_tukeyhsd`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unetcap.analysis.render import Formatted, fmt_num, fmt_p
from unetcap.study import BACKBONES, FIGURE_ORDER


def group_label(model: str, size: int) -> str:
    return f"{model} {int(size)}"


def tukey_hsd(data: pd.DataFrame, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tukey HSD (statsmodels `pairwise_tukeyhsd`) of mean DICE over model x size groups.

    Returns (pairs, groups). pairs: one row per pair of groups, `meandiff` = mean of group2
    minus mean of group1, its simultaneous interval, adjusted p and `reject`. groups: one row
    per group (figure order, then size) with n, mean, sd and the simultaneous 1-alpha
    interval of its mean (Hochberg-Tamhane; non-overlap = significant difference). With a
    single group, or one run per group, there are no pairs and no intervals.
    """
    from statsmodels.sandbox.stats.multicomp import simultaneous_ci
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    table = _group_table(data)
    if len(table) < 2 or len(data) <= len(table):
        table[["halfwidth", "low", "high"]] = np.nan
        return pd.DataFrame(columns=_PAIR_COLS), table[_GROUP_COLS]
    labels = np.array([group_label(BACKBONES[b].short, s) for b, s in zip(data["backbone"], data["size"])])
    res = pairwise_tukeyhsd(np.asarray(data["DICE"], dtype=float), labels, alpha=alpha)
    names = [str(g) for g in res.groupsunique]
    nobs = table.set_index("group").loc[names, "n"].to_numpy(dtype=float)
    half = simultaneous_ci(res.q_crit, res.variance, nobs)
    table["halfwidth"] = table["group"].map(dict(zip(names, np.ravel(half))))
    table["low"] = table["mean"] - table["halfwidth"]
    table["high"] = table["mean"] + table["halfwidth"]
    return _pair_table(res, names, table), table[_GROUP_COLS]


def _group_table(data: pd.DataFrame) -> pd.DataFrame:
    """n, mean and sd of DICE per model x size group, in the figures' order (model, then size)."""
    order = {b: i for i, b in enumerate(FIGURE_ORDER)}
    table = (
        data.groupby(["backbone", "size"])["DICE"]
        .agg(["count", "mean", "std"])
        .reset_index()
        .rename(columns={"count": "n", "std": "sd"})
    )
    table["model"] = table["backbone"].map(lambda b: BACKBONES[b].short)
    table["group"] = [group_label(m, s) for m, s in zip(table["model"], table["size"])]
    table = table.sort_values(["backbone", "size"], key=lambda c: c.map(order) if c.name == "backbone" else c)
    return table.reset_index(drop=True)


def _pair_table(res, names: list[str], table: pd.DataFrame) -> pd.DataFrame:
    """The pairs of statsmodels' result `res` (groups `names`), each listed in the figures'
    order of `table` (the earlier group first, the difference and interval turned with it)."""
    rank = {g: i for i, g in enumerate(table["group"])}
    where = table.set_index("group")
    i1, i2 = np.triu_indices(len(names), 1)
    rows = []
    for a, b, diff, p, (lo, hi), rej in zip(i1, i2, res.meandiffs, res.pvalues, res.confint, res.reject):
        g1, g2 = names[a], names[b]
        if rank[g1] > rank[g2]:  # list each pair in the figures' order
            g1, g2, diff, lo, hi = g2, g1, -diff, -hi, -lo
        rows.append(
            {
                "group1": g1,
                "group2": g2,
                "model1": where.at[g1, "model"],
                "size1": int(where.at[g1, "size"]),
                "model2": where.at[g2, "model"],
                "size2": int(where.at[g2, "size"]),
                "meandiff": float(diff),
                "p_adj": float(p),
                "lower": float(lo),
                "upper": float(hi),
                "reject": bool(rej),
            }
        )
    pairs = pd.DataFrame(rows, columns=_PAIR_COLS)
    return pairs.sort_values(["group1", "group2"], key=lambda c: c.map(rank)).reset_index(drop=True)


_PAIR_COLS = ["group1", "group2", "model1", "size1", "model2", "size2", "meandiff", "p_adj", "lower", "upper", "reject"]
_GROUP_COLS = ["model", "backbone", "size", "n", "mean", "sd", "halfwidth", "low", "high"]


def format_hsd(groups: pd.DataFrame, pairs: pd.DataFrame, alpha: float) -> list[Formatted]:
    level = f"{100 * (1 - alpha):g} %"
    g_rows = [
        [
            r.model,
            f"{int(r.size)}",
            f"{int(r.n)}",
            fmt_num(r.mean),
            fmt_num(r.sd),
            "" if not np.isfinite(r.low) else f"[{r.low:.4f}, {r.high:.4f}]",
        ]
        for r in groups.itertuples()
    ]
    p_rows = [
        [
            r.group1,
            r.group2,
            fmt_num(r.meandiff),
            f"[{r.lower:.4f}, {r.upper:.4f}]",
            fmt_p(r.p_adj),
            "yes" if r.reject else "",
        ]
        for r in pairs.itertuples()
    ]
    return [
        Formatted(
            f"Tukey HSD groups: mean DICE per model and dataset size, simultaneous {level} interval",
            ["Model", "Size", "n", "Mean", "SD", f"HSD {level}"],
            g_rows,
            [
                (
                    "Two groups differ significantly when their intervals do not overlap "
                    "(Hochberg and Tamhane's simultaneous intervals for the HSD)."
                )
            ],
            "lrrrrl",
        ),
        Formatted(
            f"Tukey HSD pairs ({len(pairs)}): difference = group 2 - group 1",
            ["Group 1", "Group 2", "Difference", f"{level} interval", "p adj", "Significant"],
            p_rows,
            [f"Significant: adjusted p < {alpha:g}."],
            "llrlrl",
        ),
    ]
