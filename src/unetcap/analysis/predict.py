"""What the OLS says beyond its coefficients (docs/design.md §11): mean DICE per model and
dataset size over the lr x reg grid, trained sizes and untrained ones alike, with intervals
(`predictions.csv`), and Table 1's short-minus-long contrasts per family and trained lr
(`table1_depth.csv`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unetcap.analysis.formula import term_variables
from unetcap.analysis.linear import Fit
from unetcap.analysis.render import Formatted, fmt_level, fmt_num, fmt_p, stars
from unetcap.study import BACKBONES, FIGURE_ORDER


def design_rows(fit: Fit, rows: pd.DataFrame) -> np.ndarray:
    """The fitted model's design matrix of new `rows` (patsy, the fit's own coding)."""
    import patsy

    spec = fit.results.model.data.model_spec
    return np.asarray(patsy.build_design_matrices([spec], rows)[0], dtype=float)


def grid_rows(data: pd.DataFrame, backbone: str, size: float) -> pd.DataFrame:
    """One row per (lr, reg) of the grid for a backbone at a size."""
    b = BACKBONES[backbone]
    lrs, regs = sorted(data["lr"].unique()), sorted(data["reg"].unique())
    return pd.DataFrame(
        [
            {"ls": b.depth, "Family": b.family, "Dataset": float(size), "lr": lr, "reg": reg, "DICE": 0.0}
            for lr in lrs
            for reg in regs
        ]
    )


def ols_predictions(ols: Fit, data: pd.DataFrame, sizes=(), alpha: float = 0.05) -> tuple[pd.DataFrame, dict]:
    """The OLS's mean DICE per model and size, averaged over the grid's lr x reg values (the
    same runs an HSD group pools), for the trained sizes and `sizes`, with the 1-alpha
    interval of that mean. Returns (table, design rows by (backbone, size))."""
    from scipy import stats as st

    res = ols.results
    params, cov = np.asarray(res.params, dtype=float), np.asarray(res.cov_params(), dtype=float)
    tcrit = st.t.ppf(1 - alpha / 2, res.df_resid)
    trained = sorted(int(s) for s in data["size"].unique())
    all_sizes = sorted(set(trained) | {int(s) for s in sizes})
    backbones = [b for b in FIGURE_ORDER if b in set(data["backbone"])]
    lo_size, hi_size = min(trained), max(trained)
    rows, design = [], {}
    for backbone in backbones:
        for size in all_sizes:
            x = design_rows(ols, grid_rows(data, backbone, size)).mean(axis=0)
            design[(backbone, size)] = x
            mean = float(x @ params)
            se = float(np.sqrt(max(x @ cov @ x, 0.0)))
            rows.append(
                {
                    "model": BACKBONES[backbone].short,
                    "backbone": backbone,
                    "size": size,
                    "trained": size in trained,
                    "extrapolated": not (lo_size <= size <= hi_size),
                    "predicted": mean,
                    "se": se,
                    "low": mean - tcrit * se,
                    "high": mean + tcrit * se,
                }
            )
    return pd.DataFrame(rows), design


def ranking_constant(predictions: pd.DataFrame) -> bool:
    """Whether the OLS's differences between models are the same at every size (a formula
    with no size x model interaction, like the paper's)."""
    wide = predictions.pivot(index="size", columns="backbone", values="predicted")
    diffs = wide.sub(wide.iloc[:, 0], axis=0)
    return bool(np.allclose(diffs.to_numpy(), diffs.iloc[[0]].to_numpy(), atol=1e-9))


def depth_contrasts(ols: Fit, data: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per family with both depths in the grid and per trained lr: the OLS's short-minus-long
    difference in mean DICE (a linear contrast, statsmodels `t_test`, averaged over the
    trained sizes and regs, which cancel in the paper's formula), its standard error, t, p
    and 1-alpha interval. Empty when the formula has no `ls`."""
    res = ols.results
    cols = ["Family", "lr", "difference", "std_error", "t", "p", "ci_low", "ci_high"]
    if not any("ls" in term_variables(t) for t in ols.terms):
        return pd.DataFrame(columns=cols)
    rows = []
    sizes, regs = sorted(data["Dataset"].unique()), sorted(data["reg"].unique())
    for family in sorted(data["Family"].unique()):
        if data.loc[data["Family"] == family, "ls"].nunique() < 2:
            continue
        for lr in sorted(data["lr"].unique()):

            def mean_row(ls, family=family, lr=lr):
                grid = pd.DataFrame(
                    [
                        {"ls": ls, "Family": family, "Dataset": size, "lr": lr, "reg": reg, "DICE": 0.0}
                        for size in sizes
                        for reg in regs
                    ]
                )
                return design_rows(ols, grid).mean(axis=0)

            test = res.t_test(mean_row("short") - mean_row("long"))
            low, high = np.ravel(test.conf_int(alpha=alpha))
            rows.append(
                {
                    "Family": family,
                    "lr": lr,
                    "difference": float(np.ravel(test.effect)[0]),
                    "std_error": float(np.ravel(test.sd)[0]),
                    "t": float(np.ravel(test.tvalue)[0]),
                    "p": float(np.ravel(test.pvalue)[0]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                }
            )
    return pd.DataFrame(rows, columns=cols)


def format_depth(depth: pd.DataFrame, alpha: float) -> Formatted:
    level = f"{100 * (1 - alpha):g} %"
    rows = [
        [
            r.Family,
            fmt_level(r.lr),
            fmt_num(r.difference),
            fmt_num(r.std_error),
            f"[{r.ci_low:.4f}, {r.ci_high:.4f}]",
            fmt_p(r.p),
            stars(r.p),
        ]
        for r in depth.itertuples()
    ]
    return Formatted(
        "Short minus long encoder, per family and trained lr (OLS contrast)",
        ["Family", "lr", "Difference", "Std. error", f"{level} interval", "p", ""],
        rows,
        [
            (
                "Mean DICE of the short encoder minus the long one of the same family at that lr, "
                "from the OLS (a linear contrast of its coefficients; dataset size and reg cancel "
                "in the paper's formula). Only families with both depths in the grid."
            )
        ],
        "lrrrlrl",
        "tab:depth",
    )
