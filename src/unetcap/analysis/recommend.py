"""Which model for my data size? (docs/design.md §11): per trained size the models not
significantly worse than the best one under the Tukey HSD; per untrained size of the config
the OLS-predicted DICE, ranked, with Holm-adjusted tests against the top model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unetcap.analysis.hsd import group_label
from unetcap.analysis.linear import Fit
from unetcap.analysis.render import Formatted, fmt_num, fmt_p


def which_model(
    groups: pd.DataFrame, pairs: pd.DataFrame, predictions: pd.DataFrame, design: dict, ols: Fit, alpha: float = 0.05
) -> pd.DataFrame:
    """Per dataset size, every model ranked, with `best` marking the top model and those not
    significantly worse than it. Trained sizes: observed mean DICE, HSD interval and the
    HSD's adjusted p against the top model (no HSD: every model counts as best). Untrained
    sizes: ranked by the OLS-predicted DICE, p of its difference to the top model's
    prediction (t test, Holm-adjusted). The OLS prediction and its interval are given for
    every size."""
    p_hsd = {}
    for g1, g2, p in zip(pairs["group1"], pairs["group2"], pairs["p_adj"]):
        p_hsd[(g1, g2)] = p_hsd[(g2, g1)] = float(p)
    observed = groups.set_index(["backbone", "size"])
    out = []
    for size, block in predictions.groupby("size", sort=True):
        if bool(block["trained"].iloc[0]):
            block, p_top = _rank_trained(block.copy(), size, observed, p_hsd)
            basis = "observed (Tukey HSD)"
        else:
            block, p_top = _rank_untrained(block.copy(), size, design, ols)
            basis = "OLS prediction"
        block["p_vs_top"] = p_top
        block["best"] = [i == 0 or not np.isfinite(p) or p >= alpha for i, p in enumerate(p_top)]
        block["rank"] = np.arange(1, len(block) + 1)
        block["basis"] = basis
        out.append(block.rename(columns={"low": "predicted_low", "high": "predicted_high"}))
    return pd.concat(out, ignore_index=True)[WHICH_MODEL_COLUMNS]


WHICH_MODEL_COLUMNS = [
    *("size", "trained", "basis", "rank", "model", "backbone", "best", "n", "mean", "hsd_low", "hsd_high"),
    *("p_vs_top", "predicted", "predicted_low", "predicted_high", "extrapolated"),
]


def _rank_trained(block: pd.DataFrame, size, observed: pd.DataFrame, p_hsd: dict) -> tuple[pd.DataFrame, list]:
    """A trained size's models ranked by observed mean DICE, with their HSD groups' n, mean and
    interval, and each one's HSD adjusted p against the top model (NaN for the top)."""
    for col in ("n", "mean", "low", "high"):
        block["hsd_" + col if col in ("low", "high") else col] = [
            observed.at[(b, size), col] for b in block["backbone"]
        ]
    block = block.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    top = group_label(block["model"].iloc[0], size)
    return block, [np.nan] + [p_hsd.get((top, group_label(m, size)), np.nan) for m in block["model"].iloc[1:]]


def _rank_untrained(block: pd.DataFrame, size, design: dict, ols: Fit) -> tuple[pd.DataFrame, list]:
    """An untrained size's models ranked by the OLS-predicted DICE, with each one's p against
    the top model: t test of the predicted difference (rows of `design`), Holm-adjusted."""
    from scipy import stats as st
    from statsmodels.stats.multitest import multipletests

    res = ols.results
    params, cov = np.asarray(res.params, dtype=float), np.asarray(res.cov_params(), dtype=float)
    block[["n", "mean", "hsd_low", "hsd_high"]] = np.nan
    block = block.sort_values("predicted", ascending=False, kind="stable").reset_index(drop=True)
    top_x = design[(block["backbone"].iloc[0], size)]
    raw = []
    for b in block["backbone"].iloc[1:]:
        c = top_x - design[(b, size)]
        se = float(np.sqrt(max(c @ cov @ c, 0.0)))
        t = float(c @ params) / se if se > 0 else np.inf
        raw.append(2 * st.t.sf(abs(t), res.df_resid))
    return block, [np.nan] + (list(multipletests(raw, method="holm")[1]) if raw else [])


def format_which_model(table: pd.DataFrame, alpha: float, constant: bool) -> tuple[list[Formatted], list[str]]:
    """The summary ("best model(s) per size") and one table per size, and the general notes
    (the OLS ranking is the same at every size when `constant`)."""
    level = f"{100 * (1 - alpha):g} %"
    tables = [_size_table(size, block, level) for size, block in table.groupby("size", sort=True)]
    general = []
    if constant and table["model"].nunique() > 1:
        general.append(
            "The OLS formula has no dataset-size x model interaction, so its predicted "
            "differences between models, and its ranking, are the same at every size; "
            "the observed (HSD) ranking per trained size is the study's answer."
        )
    return [_summary_table(table, alpha), *tables], general


def _summary_table(table: pd.DataFrame, alpha: float) -> Formatted:
    """Best model(s) per dataset size, with the top model's DICE."""
    summary_rows = []
    for size, block in table.groupby("size", sort=True):
        best = block[block["best"]]
        trained = bool(block["trained"].iloc[0])
        value = best["mean"] if trained else best["predicted"]
        summary_rows.append(
            [
                f"{size}",
                "trained" if trained else ("OLS, extrapolated" if block["extrapolated"].iloc[0] else "OLS"),
                ", ".join(best["model"]),
                f"{value.iloc[0]:.4f}",
            ]
        )
    return Formatted(
        "Which model for my data size? Best model(s) per dataset size",
        ["Dataset size", "Basis", "Best model(s)", "DICE of the top model"],
        summary_rows,
        [
            (
                f"Best: the top model and every model not significantly worse at α = {alpha:g} "
                "(trained sizes: Tukey HSD over all model x size groups; untrained sizes: "
                "t test of the OLS-predicted difference, Holm-adjusted)."
            )
        ],
        "llll",
    )


def _size_table(size, block: pd.DataFrame, level: str) -> Formatted:
    """One size's models ranked, with what the ranking rests on in the notes."""
    trained = bool(block["trained"].iloc[0])
    rows = [
        [
            str(r.rank),
            r.model,
            fmt_num(r.mean) if trained else "",
            f"[{r.hsd_low:.4f}, {r.hsd_high:.4f}]" if trained and np.isfinite(r.hsd_low) else "",
            fmt_num(r.predicted),
            f"[{r.predicted_low:.4f}, {r.predicted_high:.4f}]" if np.isfinite(r.predicted_low) else "",
            fmt_p(r.p_vs_top),
            "yes" if r.best else "",
        ]
        for r in block.itertuples()
    ]
    if trained:
        notes = [
            "Mean DICE observed over the size's runs (every lr, reg and fold); "
            f"interval: HSD simultaneous {level}; p vs top: Tukey HSD adjusted p."
        ]
    else:
        notes = [
            f"Not trained: ranked by the OLS-predicted mean DICE (averaged over the lr x reg grid), "
            f"{level} confidence interval; p vs top: Holm-adjusted t test of the difference."
        ]
        if bool(block["extrapolated"].iloc[0]):
            notes.append("This size is outside the trained sizes: the prediction is an extrapolation.")
        if ((block["predicted"] > 1) | (block["predicted"] < 0)).any():
            notes.append("Some predictions leave DICE's range [0, 1]: the linear model does not hold this far out.")
    return Formatted(
        f"{size} images ({'trained' if trained else 'predicted by the OLS'})",
        ["Rank", "Model", "Mean DICE", f"HSD {level}", "OLS DICE", f"OLS {level}", "p vs top", "Best"],
        rows,
        notes,
        "rlrlrlrl",
    )
