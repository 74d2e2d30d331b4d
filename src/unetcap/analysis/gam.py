"""The GAM of the study (docs/design.md §11): pygam's LinearGAM with a spline on
log(Dataset) and factor terms for ls, Family, lr, reg and their interactions.

Each term gets its own smoothing parameter λ, chosen by GCV (pygam's criterion for a gaussian
model with unknown scale) over a per-term grid. One λ shared by every term, pygam's default
search, let the factor interactions, which need little shrinkage, pull the spline down to
near interpolation (4.6 effective degrees of freedom, of at most 5, on 6 dataset sizes of a
table with a strong lr x family interaction, where this search gives 3.0, as R's mgcv does
fitting the same terms by the same GCV; its REML gives 3.6).

A term's edf are counted as mgcv counts them (`term_edf`): a straight line has edf 1.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.linalg

from unetcap.analysis.render import Formatted, and_join, fmt_level
from unetcap.study import BACKBONES

# Features of the GAM's design matrix; the categoricals are coded 0..k-1 in sorted order.
GAM_FEATURES = ("log(Dataset)", "ls", "Family", "lr", "reg")
# The GAM's terms: each a tuple of feature names. One feature: spline for log(Dataset),
# factor otherwise; several: a tensor term over categorical features (an interaction).
GAM_TERMS = (("log(Dataset)",), ("ls",), ("Family",), ("ls", "Family"), ("lr",), ("lr", "ls", "Family"), ("reg",))
# Smoothing: each term's λ from its grid, by GAM_CRITERION (pygam's gridsearch), one term at
# a time with the others held, sweeping the terms until a sweep moves none (at most
# GAM_SWEEPS sweeps), the first over the whole grids, the next over each λ's neighbours. The
# spline's grid has two values per decade (its edf is the number reported); a factor term's λ
# barely moves the fit (dozens of runs per level), so its grid has one value per two decades.
# About 50 fits in the first sweep and 15 in each next, where the full product of the
# per-term grids would be 17 x 5^6.
GAM_SPLINE_LAMBDAS = tuple(np.logspace(-3, 5, 17))
GAM_FACTOR_LAMBDAS = tuple(np.logspace(-3, 5, 5))
GAM_CRITERION = "GCV"
GAM_SWEEPS = 6
GAM_START = 0.6  # pygam's default λ
# A spline on log(Dataset) needs this many dataset sizes to bend; with fewer (two) the size
# enters as a straight line in log(Dataset), pygam's linear term l().
GAM_SPLINE_MIN_SIZES = 3
GAM_CAPTION = (
    "Smoothing: one λ per term, each chosen by GCV (generalised cross-validation, pygam's "
    "criterion for a gaussian model with unknown scale, n RSS / (n - 1.4 edf)², as mgcv's with "
    "gamma = 1.4) over λ = 10^-3 ... 10^5, one term at a time with the others held, until no λ "
    "moves; edf = the term's effective degrees of freedom, "
    "counted as R's mgcv counts them: the trace of the term's block of the smoother, every term "
    "centred over the runs and the constant left to the intercept (edf 1), so a straight line has "
    "edf 1 and a factor of k levels at most k - 1. Dataset size enters as a spline on log(Dataset): "
    "the paper's sizes grow by factors of 2 to 2.5 and DICE rises with the logarithm of the "
    "images (the paper's OLS), so log(Dataset) is the scale on which a smooth curve is plausible, "
    "and the spline's edf says how far the curve departs from the OLS's straight line (edf 1). "
    "lr and L2 (reg) enter as factors, one level per grid value: the grid has few values of each "
    "(three in the paper's), a decade or more apart, too few for a spline to estimate a shape; "
    "a factor takes no shape for granted where the OLS assumes a straight line in log(lr) and "
    "log(reg)."
)


@dataclass
class GamFit:
    gam: object
    terms: list[tuple[str, ...]]
    levels: dict[str, list]
    notes: list[str]
    lams: list[float] = field(default_factory=list)  # each term's λ
    sweeps: int = 0  # sweeps of the λ search
    moving: list[str] = field(default_factory=list)  # terms whose λ still moved when it stopped
    linear: bool = False  # log(Dataset) enters as a straight line (too few sizes for a spline)
    edf: list[float] = field(default_factory=list)  # each term's edf (`term_edf`), the intercept's last

    def label(self, term: tuple[str, ...]) -> str:
        return "l(log(Dataset))" if self.linear and term == ("log(Dataset)",) else gam_label(term)


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
    factors; each term's λ chosen by GCV on its own grid (`select_smoothing`), each term's
    edf counted as mgcv counts them (`term_edf`). A single-level variable is taken out of
    every term; a term left empty or repeating another is dropped; with fewer than
    GAM_SPLINE_MIN_SIZES sizes the spline is a linear term l(log(Dataset)) (each with a note)."""
    from pygam import LinearGAM

    X, levels = gam_design(data)
    n_unique = {"log(Dataset)": data["Dataset"].nunique(), **{v: len(levels[v]) for v in levels}}
    terms, notes = _usable_terms(n_unique)
    k = n_unique["log(Dataset)"]
    linear = ("log(Dataset)",) in terms and k < GAM_SPLINE_MIN_SIZES
    if linear:
        notes.append(
            f"GAM term s(log(Dataset)) fitted as l(log(Dataset)), a straight line in log(Dataset): the grid "
            f"has {k} dataset sizes and a spline needs at least {GAM_SPLINE_MIN_SIZES} to bend."
        )
    if not terms:
        notes.append("No GAM fitted: every term was dropped.")
        return GamFit(None, terms, levels, notes)
    gam = LinearGAM(_pygam_terms(terms, n_unique, linear))
    y = data["DICE"].to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lams, sweeps, moved = select_smoothing(gam, X, y, [t == ("log(Dataset)",) and not linear for t in terms])
    fit = GamFit(gam, terms, levels, notes, lams, sweeps, linear=linear, edf=term_edf(gam, X))
    fit.moving = [fit.label(terms[i]) for i in moved]
    return fit


def _usable_terms(n_unique: dict[str, int]) -> tuple[list[tuple[str, ...]], list[str]]:
    """GAM_TERMS without their single-level variables (`n_unique`: levels per feature), a
    term left empty or repeating another dropped, with a note for each change."""
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
    return terms, notes


def _pygam_terms(terms: list[tuple[str, ...]], n_unique: dict[str, int], linear: bool):
    """pygam's terms for `terms`: the spline on log(Dataset) (a linear term when `linear`),
    a one-hot factor per categorical, a tensor of one-hot factors per interaction."""
    from pygam import f, l, s, te
    from pygam.terms import TermList

    k = n_unique["log(Dataset)"]
    idx = {v: i for i, v in enumerate(GAM_FEATURES)}
    pieces = []
    for term in terms:
        if term == ("log(Dataset)",) and linear:
            pieces.append(l(0))
        elif term == ("log(Dataset)",):
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
    return TermList(*pieces)


def term_edf(gam, X: np.ndarray) -> list[float]:
    """Each term's effective degrees of freedom as mgcv counts them, then the intercept's (1).

    pygam's own `edof_per_coef` are the diagonal of the hat matrix turned by the QR of the
    model matrix: they depend on the order of the terms, and a term whose basis holds the
    constant (a B-spline's, a one-hot factor's) shares it with the intercept, so a straight
    line has edf 2. Here the same fit (fitted values, penalties, hat matrix) is written with
    each term centred over the runs and the constant left to the intercept: a factor's
    coefficients summing to 0, as its ridge penalty leaves them at the optimum, the spline's
    fitted values summing to 0 over the runs (mgcv's constraint; its penalty leaves constants
    free). A term's edf is the trace of its block of F = (X'X + S)^-1 X'X, mgcv's `edf`: a
    straight line has edf 1, a k-level factor at most k - 1, and the edf sum to the total."""
    M = gam.terms.build_columns(X).toarray()
    P = gam.terms.build_penalties().toarray()
    blocks, penalties = [], []
    for i, term in enumerate(gam.terms):
        if term.isintercept:
            continue
        index = gam.terms.get_coef_indices(i)
        Xj, Pj = M[:, index], P[np.ix_(index, index)]
        Z = np.eye(len(index))
        if np.allclose(Xj.sum(axis=1), 1.0):  # the term's basis holds the constant: drop it
            w = Pj.sum(axis=1)
            if not np.any(np.abs(w) > 1e-12 * np.abs(Pj).max(initial=0.0)):
                w = Xj.sum(axis=0)  # constants unpenalised: mgcv's constraint, sum over the runs 0
            Z = np.linalg.qr(w[:, None], mode="complete")[0][:, 1:]
        B = Xj @ Z
        blocks.append(B - B.mean(axis=0))
        penalties.append(Z.T @ Pj @ Z)
    if not blocks:
        return [1.0]
    Xc, Pc = np.hstack(blocks), scipy.linalg.block_diag(*penalties)
    F = np.linalg.solve(Xc.T @ Xc + Pc, Xc.T @ Xc)
    ends = np.cumsum([0] + [b.shape[1] for b in blocks])
    return [float(np.trace(F[a:b, a:b])) for a, b in zip(ends[:-1], ends[1:])] + [1.0]


def select_smoothing(gam, X: np.ndarray, y: np.ndarray, spline: list[bool]) -> tuple[list[float], int, list[int]]:
    """Fit `gam` with each term's λ chosen by GAM_CRITERION on its own grid
    (GAM_SPLINE_LAMBDAS for the spline, GAM_FACTOR_LAMBDAS for a factor term), by pygam's
    gridsearch over one term's grid at a time (the rows of a λ array; a tensor term's
    marginals share their term's λ) with the other terms held: the whole grid in the first
    sweep, the chosen λ's neighbours on the grid in the next, until a sweep changes no λ
    (at most GAM_SWEEPS). Returns the λ per term, the sweeps run and the terms whose λ still
    moved in the last one (none when the search converged); `gam` is left fitted at them."""
    gam.fit(X, y)  # at pygam's default λ: the start, and a candidate of every search below
    dims = [np.size(lam) for lam in gam.lam]  # λ values per term: one per marginal
    lams = [GAM_START] * len(dims)
    grids = [np.asarray(GAM_SPLINE_LAMBDAS if is_spline else GAM_FACTOR_LAMBDAS) for is_spline in spline]

    def row(values):
        return [v for v, d in zip(values, dims) for _ in range(d)]

    sweep = 0
    while sweep < GAM_SWEEPS:
        sweep += 1
        before = list(lams)
        for i, grid in enumerate(grids):
            if sweep > 1:
                at = int(np.argmin(np.abs(np.log(grid) - np.log(lams[i]))))
                grid = grid[max(at - 1, 0) : at + 2]
            candidates = np.array([row([*lams[:i], lam, *lams[i + 1 :]]) for lam in grid])
            gam.gridsearch(X, y, lam=candidates, objective=GAM_CRITERION, progress=False)
            lams[i] = float(np.ravel(gam.lam[i])[0])
        moved = [i for i, (a, b) in enumerate(zip(before, lams)) if a != b]
        if not moved:
            break
    return lams, sweep, moved


def term_table(fit: GamFit) -> pd.DataFrame:
    """One row per GAM term: `term`, `kind` (spline on log(Dataset), factor, factor
    interaction), `coefficients`, `edf` (its effective degrees of freedom), `lam` (its λ) and
    the selection `criterion` with the fit's score under it, then the intercept's row."""
    cols = ["term", "kind", "coefficients", "edf", "lam", "criterion", "score"]
    if fit.gam is None:
        return pd.DataFrame(columns=cols)
    gam = fit.gam
    score = float(gam.statistics_[GAM_CRITERION])
    rows = []
    for i, term in enumerate(fit.terms):
        index = gam.terms.get_coef_indices(i)
        kind = "factor" if len(term) == 1 else "factor interaction"
        if term == ("log(Dataset)",):
            kind = "linear in log(Dataset)" if fit.linear else "spline on log(Dataset)"
        rows.append([fit.label(term), kind, len(index), fit.edf[i], fit.lams[i], GAM_CRITERION, score])
    index = gam.terms.get_coef_indices(len(fit.terms))  # pygam's intercept, last and unpenalised
    rows.append(["intercept", "constant", len(index), fit.edf[-1], np.nan, GAM_CRITERION, score])
    return pd.DataFrame(rows, columns=cols)


def format_terms(table: pd.DataFrame, fit: GamFit) -> Formatted:
    """The term table as the report prints it, with the caption on smoothing and scales."""
    rows = [
        [
            r.term,
            r.kind,
            str(r.coefficients),
            "" if not np.isfinite(r.edf) else f"{r.edf:.2f}",
            "" if not np.isfinite(r.lam) else f"{r.lam:.3g}",
        ]
        for r in table.itertuples()
    ]
    notes = [GAM_CAPTION]
    if fit.gam is not None:
        stats = fit.gam.statistics_
        notes.insert(
            0,
            f"Total edf {stats['edof']:.2f}; {GAM_CRITERION} {stats[GAM_CRITERION]:.6g}; pseudo R² "
            f"{stats['pseudo_r2']['explained_deviance']:.4f}; λ search: {fit.sweeps} sweep(s) of "
            f"{len(GAM_SPLINE_LAMBDAS)} values for the spline, {len(GAM_FACTOR_LAMBDAS)} per factor term.",
        )
    if fit.moving:
        notes.append(
            f"The λ search stopped after {GAM_SWEEPS} sweeps with the λ of {and_join(fit.moving)} still "
            "moving: GCV is flat along it (f(ls), f(Family) and te(ls, Family) describe the same six "
            "model means, f(lr) and te(lr, ls, Family) the same model x lr means), so the fit barely changes."
        )
    notes += [f"Note: {n}" for n in fit.notes]
    return Formatted(
        f"GAM of DICE (pygam LinearGAM), smoothing per term by {GAM_CRITERION}",
        ["Term", "Kind", "Coefficients", "edf", "λ"],
        rows,
        notes,
        "llrrr",
    )


def gam_label(term: tuple[str, ...]) -> str:
    if term == ("log(Dataset)",):
        return "s(log(Dataset))"
    return f"f({term[0]})" if len(term) == 1 else f"te({', '.join(term)})"


def gam_summary(fit: GamFit) -> str:
    """The term table (edf, λ and criterion per term) and pygam's summary, with a legend of
    its feature numbers and the term notes, as plain text."""
    buffer = io.StringIO()
    if fit.gam is not None:
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit.gam.summary()
    terms = format_terms(term_table(fit), fit)
    width = [max(len(c) for c in col) for col in zip(terms.header, *terms.rows)]
    legend = [
        terms.title + ".",
        "",
        *(
            "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, width, terms.align)).rstrip()
            for row in [terms.header, *terms.rows]
        ),
        "",
        *(n for n in terms.notes if not n.startswith("Note: ")),
        "",
        "Terms: " + (" + ".join(fit.label(t) for t in fit.terms) or "none"),
        "Features in pygam's names:",
    ]
    for i, name in enumerate(GAM_FEATURES):
        if name in fit.levels:
            codes = ", ".join(f"{j}={fmt_level(v)}" for j, v in enumerate(fit.levels[name]))
            legend.append(f"  {i}: {name} (factor: {codes})")
        else:
            legend.append(f"  {i}: {name} ({'linear' if fit.linear else 'spline'})")
    legend += [
        "",
        (
            "pygam warns that its p-values are too small when the smoothing is estimated "
            "(pyGAM issue 163): read them as descriptive only."
        ),
        (
            "pygam's EDoF per term below are its own count: the diagonal of its hat matrix turned by "
            "the QR of the model matrix, summed per term, which depends on the order of the terms and "
            "gives the spline the constant it shares with the intercept; the edf above are mgcv's count."
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
        label = fit.label(term)
        if term == ("log(Dataset)",):
            grid = np.linspace(np.log(data["Dataset"].min()), np.log(data["Dataset"].max()), 100)
            X = np.zeros((len(grid), len(GAM_FEATURES)))
            X[:, 0] = grid
            combos = [{"Dataset": float(np.exp(g))} for g in grid]
        else:
            combos, codes = [], []
            for combo in itertools.product(*(fit.levels[v] for v in term)):
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
