"""The GAM of the study (docs/design.md §11): pygam's LinearGAM with a spline on
log(Dataset) and factor terms for ls, Family, lr, reg and their interactions.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unetcap.analysis.render import and_join, fmt_level
from unetcap.study import BACKBONES

# Features of the GAM's design matrix; the categoricals are coded 0..k-1 in sorted order.
GAM_FEATURES = ("log(Dataset)", "ls", "Family", "lr", "reg")
# The GAM's terms: each a tuple of feature names. One feature: spline for log(Dataset),
# factor otherwise; several: a tensor term over categorical features (an interaction).
GAM_TERMS = (("log(Dataset)",), ("ls",), ("Family",), ("ls", "Family"), ("lr",), ("lr", "ls", "Family"), ("reg",))


@dataclass
class GamFit:
    gam: object
    terms: list[tuple[str, ...]]
    levels: dict[str, list]
    notes: list[str]


def gam_design(data: pd.DataFrame) -> tuple[np.ndarray, dict[str, list]]:
    """The GAM's feature matrix (columns GAM_FEATURES) and each categorical's levels."""
    levels = {v: sorted(data[v].unique()) for v in ("ls", "Family", "lr", "reg")}
    cols = [np.log(data["Dataset"].to_numpy(dtype=float))]
    for v in ("ls", "Family", "lr", "reg"):
        code = {lev: i for i, lev in enumerate(levels[v])}
        cols.append(data[v].map(code).to_numpy(dtype=float))
    return np.column_stack(cols), levels


def fit_gam(data: pd.DataFrame) -> GamFit:
    """pygam LinearGAM: s(log Dataset) + f(ls) + f(Family) + te(ls, Family) + f(lr) +
    te(lr, ls, Family) + f(reg), the OLS's variables and interactions with lr and reg as
    factors; smoothing chosen by pygam's GCV grid search. A single-level variable is taken
    out of every term; a term left empty or repeating another is dropped (with a note)."""
    from pygam import LinearGAM, f, s, te
    from pygam.terms import TermList

    X, levels = gam_design(data)
    n_unique = {"log(Dataset)": data["Dataset"].nunique(), **{v: len(levels[v]) for v in levels}}
    terms, notes = [], []
    for term in GAM_TERMS:
        kept = tuple(v for v in term if n_unique[v] > 1)
        label = gam_label(term)
        if not kept:
            notes.append(f"GAM term {label} dropped: the grid has a single level of {and_join(term)}.")
        elif kept in terms:
            notes.append(
                f"GAM term {label} dropped: without its single-level variable(s) it repeats {gam_label(kept)}."
            )
        else:
            if kept != term:
                notes.append(f"GAM term {label} reduced to {gam_label(kept)} (single-level variable).")
            terms.append(kept)
    idx = {v: i for i, v in enumerate(GAM_FEATURES)}
    pieces = []
    for term in terms:
        if term == ("log(Dataset)",):
            k = n_unique["log(Dataset)"]
            pieces.append(s(0, n_splines=max(4, min(10, k + 2)), spline_order=min(3, max(k - 1, 1))))
        elif len(term) == 1:
            pieces.append(f(idx[term[0]]))
        else:
            pieces.append(
                te(
                    *[idx[v] for v in term],
                    dtype=["categorical"] * len(term),
                    spline_order=[0] * len(term),
                    n_splines=[n_unique[v] for v in term],
                )
            )
    if not pieces:
        notes.append("No GAM fitted: every term was dropped.")
        return GamFit(None, terms, levels, notes)
    gam = LinearGAM(TermList(*pieces))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gam.gridsearch(X, data["DICE"].to_numpy(dtype=float), progress=False)
    return GamFit(gam, terms, levels, notes)


def gam_label(term: tuple[str, ...]) -> str:
    if term == ("log(Dataset)",):
        return "s(log(Dataset))"
    return f"f({term[0]})" if len(term) == 1 else f"te({', '.join(term)})"


def gam_summary(fit: GamFit) -> str:
    """pygam's summary, with a legend of its feature numbers and the term notes."""
    buffer = io.StringIO()
    if fit.gam is not None:
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit.gam.summary()
    legend = [
        "GAM of DICE (pygam LinearGAM, smoothing by GCV grid search).",
        "",
        "Terms: " + (" + ".join(gam_label(t) for t in fit.terms) or "none"),
        "Features in pygam's names:",
    ]
    for i, name in enumerate(GAM_FEATURES):
        if name in fit.levels:
            codes = ", ".join(f"{j}={fmt_level(v)}" for j, v in enumerate(fit.levels[name]))
            legend.append(f"  {i}: {name} (factor: {codes})")
        else:
            legend.append(f"  {i}: {name} (spline)")
    legend += [
        "",
        (
            "pygam warns that its p-values are too small when the smoothing is estimated "
            "(pyGAM issue 163): read them as descriptive only."
        ),
        "",
    ]
    legend += [f"Note: {n}" for n in fit.notes]
    return "\n".join(legend).rstrip() + "\n\n" + buffer.getvalue().rstrip() + "\n"


def gam_partial(fit: GamFit, data: pd.DataFrame, width: float = 0.95) -> pd.DataFrame:
    """Each GAM term's partial dependence with its `width` interval: a 100-point grid over
    the trained sizes for the spline, one row per level (combination) for factor terms."""
    gam = fit.gam
    rows = []
    for i, term in enumerate(fit.terms):
        label = gam_label(term)
        if term == ("log(Dataset)",):
            grid = np.linspace(np.log(data["Dataset"].min()), np.log(data["Dataset"].max()), 100)
            X = np.zeros((len(grid), len(GAM_FEATURES)))
            X[:, 0] = grid
            combos = [{"Dataset": float(np.exp(g))} for g in grid]
        else:
            combos, codes = [], []
            for combo in _level_product([fit.levels[v] for v in term]):
                combos.append(dict(zip(term, combo)))
                codes.append([fit.levels[v].index(c) for v, c in zip(term, combo)])
            X = np.zeros((len(combos), len(GAM_FEATURES)))
            for j, v in enumerate(term):
                X[:, GAM_FEATURES.index(v)] = [c[j] for c in codes]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            effect, ci = gam.partial_dependence(term=i, X=X, width=width)
        for combo, e, (lo, hi) in zip(combos, effect, ci):
            row = {
                "term": label,
                "Dataset": np.nan,
                "ls": None,
                "Family": None,
                "lr": np.nan,
                "reg": np.nan,
                "effect": float(e),
                "low": float(lo),
                "high": float(hi),
            }
            row.update(combo)
            rows.append(row)
    table = pd.DataFrame(rows, columns=["term", "Dataset", "ls", "Family", "lr", "reg", "effect", "low", "high"])
    model = {(b.depth, b.family): b.short for b in BACKBONES.values()}
    table.insert(
        6,
        "model",
        [
            model.get((ls, fam), "") if isinstance(ls, str) and isinstance(fam, str) else ""
            for ls, fam in zip(table["ls"], table["Family"])
        ],
    )
    return table


def _level_product(levels):
    if not levels:
        yield ()
        return
    for first in levels[0]:
        for rest in _level_product(levels[1:]):
            yield (first, *rest)
