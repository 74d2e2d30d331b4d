"""The paper beside the study (docs/design.md §11, `paper.{csv,md}`): Toledo et al. 2021's
Table 1 coefficients and Table 2 (SS, F, η²) next to the study's, with sign agreement per
coefficient and the rank of η² in both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unetcap.analysis.render import Formatted, fmt_num

# The paper's published numbers (Toledo et al. 2021): Table 1's OLS coefficients (and AICs)
# and Table 2's SS, F and η² (SS / summed SS, printed there under the heading ηp²).
PAPER_COEFFICIENTS = {
    "Intercept": -0.5810,
    "ls[T.short]": 0.0016,
    "ls[long]:Family[T.ResNet]": -0.0936,
    "ls[short]:Family[T.ResNet]": -0.1107,
    "ls[long]:Family[T.VGG]": -0.3903,
    "ls[short]:Family[T.VGG]": -0.3237,
    "log(Dataset)": 0.1627,
    "log(lr):ls[long]:Family[EfficientNet]": 0.0158,
    "log(lr):ls[short]:Family[EfficientNet]": 0.0193,
    "log(lr):ls[long]:Family[ResNet]": 0.0130,
    "log(lr):ls[short]:Family[ResNet]": 0.0111,
    "log(lr):ls[long]:Family[VGG]": -0.0281,
    "log(lr):ls[short]:Family[VGG]": -0.0193,
    "log(reg)": -0.0003,
}
PAPER_AIC = {"OLS": -2213.0, "GLM": -582.0}
PAPER_ANOVA = {  # term: (SS, F, η²)
    "ls": (0.0145, 0.9802, 0.0001),
    "ls:Family": (1.7284, 29.1844, 0.0145),
    "log(Dataset)": (91.7177, 6194.7601, 0.7693),
    "log(lr):ls:Family": (1.9866, 22.3631, 0.0167),
    "log(reg)": (0.0022, 0.1463, 0.0000),
    "Residuals": (23.7779, np.nan, 0.1994),
}


def paper_comparison(coef: pd.DataFrame, anova: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 coefficients and Table 2 rows beside the study's: `table`
    (1 or 2), `term`, `quantity`, `paper`, `study`, `same_sign` (coefficients) and the rank of
    η² among the terms (Table 2; 1 = largest). Empty when the study's OLS does not have the
    paper's terms (another formula, or a grid that reduced it)."""
    cols = ["table", "term", "quantity", "paper", "study", "same_sign", "rank_paper", "rank_study"]
    study = coef.set_index("term")["estimate"]
    terms = anova.set_index("term")
    if set(study.index) != set(PAPER_COEFFICIENTS) or set(terms.index) != set(PAPER_ANOVA):
        return pd.DataFrame(columns=cols)
    rows = [
        {
            "table": 1,
            "term": t,
            "quantity": "coefficient",
            "paper": v,
            "study": float(study[t]),
            "same_sign": bool(np.sign(v) == np.sign(study[t])) if v != 0 else None,
        }
        for t, v in PAPER_COEFFICIENTS.items()
    ]
    effects = [t for t in PAPER_ANOVA if t != "Residuals"]
    rank_paper = pd.Series({t: PAPER_ANOVA[t][2] for t in effects}).rank(ascending=False, method="min")
    rank_study = terms.loc[effects, "eta_sq"].rank(ascending=False, method="min")
    for t, values in PAPER_ANOVA.items():
        for quantity, paper, column in zip(("SS", "F", "η²"), values, ("sum_sq", "F", "eta_sq")):
            if not np.isfinite(paper):  # the Residuals' F
                continue
            rows.append(
                {
                    "table": 2,
                    "term": t,
                    "quantity": quantity,
                    "paper": paper,
                    "study": float(terms.at[t, column]),
                    "same_sign": None,
                    "rank_paper": rank_paper.get(t, np.nan) if quantity == "η²" else np.nan,
                    "rank_study": rank_study.get(t, np.nan) if quantity == "η²" else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def format_paper(table: pd.DataFrame) -> Formatted:
    rows = [
        [
            f"Table {r.table}",
            r.term,
            r.quantity,
            fmt_num(r.paper),
            fmt_num(r.study),
            {True: "yes", False: "no"}.get(r.same_sign, ""),
            "" if not np.isfinite(r.rank_paper) else f"{r.rank_paper:.0f} / {r.rank_study:.0f}",
        ]
        for r in table.itertuples()
    ]
    signs = table["same_sign"].dropna()
    notes = [
        f"Same sign as the paper: {int(signs.sum())} of {len(signs)} coefficients.",
        f"The paper's AIC: OLS {PAPER_AIC['OLS']:g}, log-link GLM {PAPER_AIC['GLM']:g} (the study's: aic.md).",
        "Rank: of η² among the terms, 1 = largest, paper / study.",
    ]
    if table.empty:
        notes = [
            "Not comparable: the study's OLS does not have the paper's terms (another formula, or "
            "a grid that reduced it; see the notes)."
        ]
    return Formatted(
        "The paper (Toledo et al. 2021, Tables 1 and 2) beside the study",
        ["Table", "Term", "Quantity", "Paper", "Study", "Same sign", "Rank of η²"],
        rows,
        notes,
        "lllrrll",
    )
