"""Table 2 (docs/design.md §11): the type 2 ANOVA of the paper's OLS, with the paper's η²
(each row's share of the summed SS) and partial η² beside it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unetcap.analysis.linear import Fit
from unetcap.analysis.render import STARS_LEGEND, Formatted, fmt_num, fmt_p, stars

ANOVA_TYPE = 2


ANOVA_CAPTION = (
    "Type 2 ANOVA (each term adjusted for every term that does not contain it). On the full "
    "balanced grid it equals the sequential (type 1) table; with runs missing it does not "
    "depend on the order of the terms in the formula."
)

ETA_CAPTION = (
    "η² = SS / total SS: each row's share of the column's sum of squares, Residuals included, so "
    "the column sums to 1 (the quantity the paper prints under the heading ηp²: log(Dataset) "
    "91.7177 / 119.2273 = 0.7693). On the full balanced grid the column's SS add up to the total "
    "sum of squares of DICE; with runs missing, type 2 SS do not add up and η² is the share of "
    "their sum. Partial η² = SS / (SS + SS of the residuals): the term's share of what the other "
    "terms leave unexplained (not defined for the Residuals)."
)


def anova_table(ols: Fit) -> pd.DataFrame:
    """Table 2: the OLS's type 2 ANOVA (see ANOVA_CAPTION): term, sum_sq, df, mean_sq, F,
    p, eta_sq = SS / (sum of the column's SS, Residuals included: the paper's "ηp²" column,
    which sums to 1), partial_eta_sq = SS / (SS + SS_resid), and a Residuals row.

    Each term's SS is the drop in residual SS when it is added to the model of every term
    that does not contain it (columns of the fitted design), its df the gain in rank. This is
    statsmodels' `anova_lm(typ=2)` on a full-rank design, and stays right when some ls x
    Family cells have no run (a rank-deficient design, where `anova_lm` miscounts).
    """
    from scipy import stats as st

    # Not statsmodels' anova_lm(typ=2): it tests each term as a Wald hypothesis on the
    # coefficients (restrictions L1 | L2 on their covariance) and gives the term as many df as
    # it has design columns. When an ls x Family cell has no run (vgg19 left out of the grid)
    # the design is rank-deficient, the covariance a pseudo-inverse, and its df and SS come out
    # wrong; comparing the fits with and without the term (car::Anova's definition) does not.
    res = ols.results
    X, y = np.asarray(res.model.exog, dtype=float), np.asarray(res.model.endog, dtype=float)
    slices = res.model.data.model_spec.term_slices
    ss_resid, df_resid = float(res.ssr), float(res.df_resid)

    def fit_ssr(cols):
        if not cols:
            return float(y @ y), 0
        sub = X[:, np.concatenate(cols)]
        beta, *_ = np.linalg.lstsq(sub, y, rcond=None)
        return float(np.sum((y - sub @ beta) ** 2)), int(np.linalg.matrix_rank(sub))

    columns = np.arange(X.shape[1])
    rows = []
    for term, cols in slices.items():
        factors = {f.name() for f in term.factors}
        if not factors:
            continue  # the intercept
        base = [
            columns[sl]
            for other, sl in slices.items()
            if other is not term and not factors < {f.name() for f in other.factors}
        ]
        ss0, r0 = fit_ssr(base)
        ss1, r1 = fit_ssr([*base, columns[cols]])
        ss, df = max(ss0 - ss1, 0.0), float(r1 - r0)
        F = ss / df / (ss_resid / df_resid) if df > 0 and df_resid > 0 else np.nan
        rows.append(
            {
                "term": term.name(),
                "sum_sq": ss,
                "df": df,
                "F": F,
                "p": st.f.sf(F, df, df_resid) if np.isfinite(F) else np.nan,
            }
        )
    rows.append({"term": "Residuals", "sum_sq": ss_resid, "df": df_resid, "F": np.nan, "p": np.nan})
    table = pd.DataFrame(rows)
    table["mean_sq"] = table["sum_sq"] / table["df"].where(table["df"] > 0)
    table["eta_sq"] = table["sum_sq"] / table["sum_sq"].sum()
    table["partial_eta_sq"] = table["sum_sq"] / (table["sum_sq"] + ss_resid)
    table.loc[table["term"] == "Residuals", "partial_eta_sq"] = np.nan
    return table[["term", "sum_sq", "df", "mean_sq", "F", "p", "eta_sq", "partial_eta_sq"]]


def format_anova(anova: pd.DataFrame, ols: Fit, notes: list[str]) -> Formatted:
    rows = []
    for r in anova.itertuples():
        rows.append(
            [
                r.term,
                fmt_num(r.sum_sq),
                f"{int(r.df)}",
                fmt_num(r.mean_sq),
                fmt_num(r.F, 3),
                fmt_p(r.p),
                fmt_num(r.eta_sq, 4),
                fmt_num(r.partial_eta_sq, 3),
                stars(r.p),
            ]
        )
    return Formatted(
        f"Table 2: ANOVA (type {ANOVA_TYPE}) of the OLS {ols.formula}",
        ["Term", "SS", "df", "MS", "F", "p", "η²", "partial η²", ""],
        rows,
        [ANOVA_CAPTION, ETA_CAPTION, STARS_LEGEND] + notes,
        "lrrrrrrrl",
        "tab:anova",
        ["Term", "SS", "df", "MS", "$F$", "$p$", r"$\eta^2$", r"$\eta^2_p$", ""],
    )
