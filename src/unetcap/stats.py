"""The study's statistics (docs/design.md §11), from the merged metrics table alone.

One frame of the paper's variables (`model_frame`): `DICE` (the chosen metric), `ls` (the
encoder's depth, long/short), `Family`, `Dataset` (the subset size), `lr`, `reg`. On it:

- the paper's OLS, `DICE ~ ls + ls:Family + log(Dataset) + log(lr):ls:Family + log(reg)`,
  with coefficients, standard errors, t and p (Table 1);
- the log-link gaussian GLM `log(DICE) ~ ls + ls:Family + Dataset + lr:ls:Family + reg`:
  `log(...)` on the left names the link, as in the paper; the response is DICE itself, so
  both models' AIC are likelihoods of the same numbers and can be compared;
- a type 2 ANOVA of the OLS (Table 2) with partial eta squared;
- Tukey HSD of mean DICE over model x dataset-size groups, with each group's simultaneous
  95 % interval (Hochberg and Tamhane: two groups differ when their intervals do not overlap);
- a GAM (pygam) with a spline on log(Dataset) and factor terms;
- the answer to "which model for my data size?": per trained size, the models not
  significantly worse than the best one under the HSD; per untrained size of the config,
  the OLS-predicted DICE with intervals.

A formula is reduced to what the table identifies (`usable_formula`): a factor with a single
level leaves the interactions it is part of, a term with a numeric variable of a single value
(a demo grid with one lr) is dropped, each with a note, and the analysis goes on. `write_analysis` writes every table
as CSV (full precision), Markdown and LaTeX (or HTML for the report).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import MissingDataError, SingularMatrixWarning

from unetcap import UnetcapError
from unetcap.common import write_text_atomic
from unetcap.study import BACKBONES, FIGURE_ORDER

log = logging.getLogger(__name__)

PAPER_OLS = "DICE ~ ls + ls:Family + log(Dataset) + log(lr):ls:Family + log(reg)"
PAPER_GLM = "log(DICE) ~ ls + ls:Family + Dataset + lr:ls:Family + reg"
METRICS = ("test_dice", "val_dice")
# The formula's variables, and the merged table's column each comes from.
VARIABLES = {"ls": "depth", "Family": "family", "Dataset": "size", "lr": "lr", "reg": "reg"}
REQUIRED = ("size", "backbone", "family", "depth", "lr", "reg", "fold", "status")
ANOVA_TYPE = 2
AIC_CONVENTION = (
    "AIC = -2 log L + 2 (k + 1): k coefficients of the mean plus the residual variance, as R's "
    "AIC() counts them for lm and glm; log L is the gaussian likelihood at the maximum-likelihood "
    "variance RSS/n for both models. Column aic_statsmodels is statsmodels' own `aic` of each "
    "fit: for the OLS -2 log L + 2 k (the variance not counted, 2 lower); for the GLM -2 log L + "
    "2 k with log L at statsmodels' dispersion estimate RSS/(n - k) instead of RSS/n."
)
GLM_INFERENCE = (
    "Standard errors from the dispersion estimated as Pearson χ² / (n - k), t and p on the t "
    "distribution with the n - k residual degrees of freedom, intervals estimate ± t quantile "
    "x standard error (Wald), as R's summary.glm computes them."
)
# IRLS stops when no coefficient moves by more than this (relative, or absolute near 0).
# statsmodels' default stops on the deviance, which is flat at its minimum: at 1e-8 it left
# coefficients up to 1e-6 (relative) from the maximum of the likelihood.
GLM_TOL = 1e-12
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

# Files `write_analysis` writes, relative to its output folder.
ANALYSIS_FILES = (
    "table1_ols.csv",
    "table1_ols.md",
    "table1_ols.tex",
    "table1_ols.html",
    "table1_depth.csv",
    "paper.csv",
    "paper.md",
    "table2_anova.csv",
    "table2_anova.md",
    "table2_anova.tex",
    "table2_anova.html",
    "aic.csv",
    "aic.md",
    "aic.html",
    "glm.csv",
    "glm.md",
    "hsd.csv",
    "hsd_groups.csv",
    "hsd.html",
    "predictions.csv",
    "which_model.csv",
    "which_model.md",
    "which_model.html",
    "gam_summary.txt",
    "gam_summary.html",
    "gam_partial.csv",
    "notes.md",
)


# ---------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------


def read_metrics(path) -> pd.DataFrame:
    """The merged metrics table (one row per training run), checked for the columns the
    analysis needs. Raises UnetcapError naming the file and what is missing."""
    path = Path(path)
    if not path.is_file():
        raise UnetcapError(f"{path}: the merged metrics table is missing; run the merge rule first")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UnetcapError(f"{path}: not a readable CSV table ({err})") from err
    check_metrics(table, where=str(path))
    return table


def check_metrics(table: pd.DataFrame, where: str = "metrics table") -> None:
    """Raise UnetcapError listing every problem of a merged metrics table at once."""
    problems = []
    missing = [c for c in (*REQUIRED, *METRICS) if c not in table.columns]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if table.empty:
        problems.append("no rows (no training run has finished)")
    if "backbone" in table.columns:
        unknown = sorted(set(table["backbone"].astype(str)) - set(BACKBONES))
        if unknown:
            problems.append(f"unknown backbone(s) {', '.join(unknown)} (known: {', '.join(BACKBONES)})")
    for col in ("size", "lr", "reg"):
        if col in table.columns and not pd.api.types.is_numeric_dtype(table[col]):
            problems.append(f"column {col} is not numeric")
    if problems:
        raise UnetcapError(f"{where}: " + "; ".join(problems))


@dataclass
class Frame:
    """The paper's variables, one row per usable run, and what was left out and why."""

    data: pd.DataFrame
    metric: str
    notes: list[str] = field(default_factory=list)
    runs: str = ""  # runs used and left out, and why: the line every table carries


def model_frame(metrics: pd.DataFrame, metric: str = "test_dice") -> Frame:
    """The frame every model is fitted on: `DICE` (the `metric` column), `ls` (depth),
    `Family`, `Dataset` (size), `lr`, `reg`, plus `backbone`, `model` (the figures' short
    name), `size`, `fold`, `status`. Runs whose metric is not a finite number are left out
    (with a note); diverged runs with a finite DICE stay in, as in the paper's 1620."""
    if metric not in METRICS:
        raise UnetcapError(f"analysis.metric: {metric!r} is not one of {', '.join(METRICS)}")
    check_metrics(metrics)
    dice = pd.to_numeric(metrics[metric], errors="coerce").astype(float)
    frame = pd.DataFrame(
        {
            "DICE": dice.to_numpy(),
            "ls": metrics["depth"].astype(str).to_numpy(dtype=object),
            "Family": metrics["family"].astype(str).to_numpy(dtype=object),
            "Dataset": metrics["size"].astype(float).to_numpy(),
            "lr": metrics["lr"].astype(float).to_numpy(),
            "reg": metrics["reg"].astype(float).to_numpy(),
            "backbone": metrics["backbone"].astype(str).to_numpy(dtype=object),
            "size": metrics["size"].astype(int).to_numpy(),
            "fold": metrics["fold"].to_numpy(),
            "status": metrics["status"].astype(str).to_numpy(dtype=object),
        }
    )
    frame["model"] = frame["backbone"].map(lambda b: BACKBONES[b].short)
    notes = [f"Response: {metric} ({'test set' if metric == 'test_dice' else 'validation fold'} DICE)."]
    bad = ~np.isfinite(frame["DICE"].to_numpy())
    if bad.any():
        notes.append(f"{int(bad.sum())} run(s) without a finite {metric} left out.")
    frame = frame.loc[~bad].reset_index(drop=True)
    if len(frame) < 2:
        raise UnetcapError(
            f"metrics table: the analysis needs at least 2 runs with a finite {metric}, found {len(frame)}"
        )
    diverged = int((frame["status"] != "ok").sum())
    if diverged:
        notes.append(f"{diverged} run(s) with status other than ok (diverged) kept with their {metric}.")
    order = {b: i for i, b in enumerate(FIGURE_ORDER)}
    frame = frame.sort_values(
        ["backbone", "size", "lr", "reg", "fold"],
        key=lambda c: c.map(order) if c.name == "backbone" else c,
        kind="stable",
    ).reset_index(drop=True)
    notes.insert(1, f"{len(frame)} run(s) analysed.")
    left_out = f"{int(bad.sum())} left out (no finite {metric})" if bad.any() else "none left out"
    kept = f"; {diverged} diverged run(s) kept with their {metric}" if diverged else ""
    runs = f"Runs: {len(frame)} of the {len(bad)} in the metrics table used, {left_out}{kept}."
    return Frame(frame, metric, notes, runs)


# ---------------------------------------------------------------------------------------
# Formulas
# ---------------------------------------------------------------------------------------


def split_formula(formula: str) -> tuple[str, list[str]]:
    """The left-hand side and the right-hand terms (split on top-level `+`) of a formula."""
    if formula.count("~") != 1:
        raise UnetcapError(f"analysis formula {formula!r}: needs exactly one '~'")
    lhs, rhs = (part.strip() for part in formula.split("~"))
    terms = _split_top(rhs, "+")
    if not lhs or not terms:
        raise UnetcapError(f"analysis formula {formula!r}: needs a response and at least one term")
    return lhs, terms


def term_variables(term: str) -> list[str]:
    """The formula variables (`ls`, `Family`, `Dataset`, `lr`, `reg`) a term uses."""
    return [v for v in VARIABLES if re.search(rf"(?<![\w.]){v}(?![\w.])", term)]


def single_level(data: pd.DataFrame) -> dict[str, object]:
    """The variables that take one value only in the data, with that value."""
    return {v: data[v].iloc[0] for v in VARIABLES if data[v].nunique() <= 1}


CATEGORICAL = ("ls", "Family")


def usable_formula(formula: str, data: pd.DataFrame) -> tuple[str, list[str], list[str]]:
    """The formula reduced to what the data identifies, and a note for each change.

    A factor (`ls`, `Family`) with a single level in `data` is the constant: it is taken out
    of each interaction it is part of (`log(lr):ls:Family` with one family is `log(lr):ls`,
    `ls:Family` with one depth is `Family`); a term left empty, or repeating a term already
    kept, is dropped. A term with a numeric variable (`Dataset`, `lr`, `reg`) that takes a
    single value is dropped: its effect is not identified. Returns (formula, kept terms,
    notes); with no term left the formula is `lhs ~ 1`.
    """
    lhs, terms = split_formula(formula)
    constant = single_level(data)
    kept, notes = [], []
    for term in terms:
        flat = [v for v in term_variables(term) if v in constant]
        if not flat:
            kept.append(term)
            continue
        what = _and([f"{v} ({_fmt_level(constant[v])})" for v in flat])
        numeric = [v for v in flat if v not in CATEGORICAL]
        if numeric:
            values = _and([f"{v} ({_fmt_level(constant[v])})" for v in numeric])
            notes.append(
                f"Term `{term}` dropped: the grid has a single value of {values}, so its effect is not identified."
            )
            continue
        parts = [p for p in _split_top(term, ":") if not set(term_variables(p)) <= set(flat)]
        reduced = ":".join(parts)
        if not parts:
            notes.append(f"Term `{term}` dropped: the grid has a single level of {what}.")
        elif reduced in kept:
            notes.append(
                f"Term `{term}` dropped: with a single level of {what} it is `{reduced}`, already in the formula."
            )
        else:
            notes.append(
                f"Term `{term}` reduced to `{reduced}`: the grid has a single level of {what}, "
                f"so the term keeps what varies."
            )
            kept.append(reduced)
    return f"{lhs} ~ {' + '.join(kept) if kept else '1'}", kept, notes


def _split_top(text: str, sep: str) -> list[str]:
    """`text` split on `sep` outside parentheses, each piece stripped."""
    pieces, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            pieces.append(current.strip())
            current = ""
        else:
            current += ch
    pieces.append(current.strip())
    return [p for p in pieces if p]


def _and(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _fmt_level(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)


@contextlib.contextmanager
def _patsy_engine():
    """Fit with patsy, whose term names are the paper's (`ls[T.short]`)."""
    import statsmodels.formula

    before = statsmodels.formula.options.formula_engine
    statsmodels.formula.options.formula_engine = "patsy"
    try:
        yield
    finally:
        statsmodels.formula.options.formula_engine = before


FORMULA_ENV = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt}


# ---------------------------------------------------------------------------------------
# OLS, GLM, AIC, ANOVA
# ---------------------------------------------------------------------------------------


@dataclass
class Fit:
    """A fitted model with the formula actually used and the notes about it."""

    results: object
    formula: str
    requested: str
    terms: list[str]
    notes: list[str]
    link: str = "identity"
    response: str = "DICE"
    failure: str = ""  # why `results` is None


def fit_ols(data: pd.DataFrame, formula: str = PAPER_OLS) -> Fit:
    """The OLS of `formula` (terms on a single level dropped), fitted with statsmodels."""
    import statsmodels.formula.api as smf

    used, terms, notes = usable_formula(formula, data)
    with _patsy_engine(), warnings.catch_warnings(), _formula_errors("analysis.ols_formula", formula):
        warnings.simplefilter("ignore", category=SingularMatrixWarning)  # noted below instead
        results = smf.ols(used, data, eval_env=FORMULA_ENV).fit()
    fit = Fit(results, used, formula, terms, notes)
    fit.notes += identification_notes(fit)
    return fit


def fit_glm(data: pd.DataFrame, formula: str = PAPER_GLM) -> Fit:
    """The gaussian GLM of `formula`. A left side `log(y)` means: response y, log link (the
    paper's notation); any other left side is the response with the identity link."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    lhs, _ = split_formula(formula)
    match = re.fullmatch(r"log\((\w+)\)", lhs.replace(" ", ""))
    link, response = ("log", match.group(1)) if match else ("identity", lhs)
    used, terms, notes = usable_formula(formula, data)
    fitted = f"{response} ~ {used.split('~', 1)[1].strip()}"
    family = sm.families.Gaussian(link=sm.families.links.Log() if link == "log" else sm.families.links.Identity())
    if link == "log" and (response not in data or (data[response] < 0).any()):
        raise UnetcapError(
            f"analysis.glm_formula {formula!r}: log(y) on the left needs a variable y >= 0 (DICE), not {response!r}"
        )
    with _patsy_engine(), warnings.catch_warnings(), _formula_errors("analysis.glm_formula", formula):
        warnings.simplefilter("ignore", category=sm.tools.sm_exceptions.DomainWarning)
        warnings.simplefilter("ignore", category=SingularMatrixWarning)  # noted below instead
        model = smf.glm(fitted, data, family=family, eval_env=FORMULA_ENV)
    if link == "log":
        # With a log link the fit has no maximum when every run of a model (ls x Family cell)
        # scored 0: its mean would have to be exp(-inf). A degenerate grid, not a bad formula.
        cells = data.groupby(["ls", "Family"], observed=True)[response].max()
        zero = [f"{ls} {family}" for (ls, family), top in cells.items() if top <= 0]
        if zero:
            failure = f"every run of {', '.join(zero)} has {response} = 0, which a log link cannot reach"
            notes.append(f"The GLM was not fitted: {failure}. Its AIC and coefficients are left blank.")
            return Fit(None, used, formula, terms, notes, link=link, response=response, failure=failure)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = model.fit(use_t=True, tol_criterion="params", tol=GLM_TOL, rtol=GLM_TOL)
    except ValueError as err:
        failure = f"IRLS failed ({str(err).splitlines()[0]})"
        notes.append(f"The GLM could not be fitted: {failure}. Its AIC and coefficients are left blank.")
        return Fit(None, used, formula, terms, notes, link=link, response=response, failure=failure)
    if not results.converged:
        notes.append("The GLM's IRLS did not converge; its AIC is not reliable.")
    fit = Fit(results, used, formula, terms, notes, link=link, response=response)
    fit.notes += identification_notes(fit)
    return fit


@contextlib.contextmanager
def _formula_errors(key: str, formula: str):
    """A formula that names an unknown variable, or gives infinite values (log of a zero
    reg), as a UnetcapError naming the config key."""
    import patsy

    try:
        yield
    except (patsy.PatsyError, MissingDataError, NameError, ValueError) as err:
        raise UnetcapError(
            f"{key} {formula!r}: cannot be fitted ({str(err).splitlines()[0]}). Its variables are "
            f"DICE, {', '.join(VARIABLES)}; a log() needs values > 0 (reg = 0 in the grid?)."
        ) from err


def not_estimable(fit: Fit) -> list[str]:
    """Coefficients whose design column is all zero: no run has that combination (an ls x
    Family cell of a backbone that is not in the grid)."""
    X = np.asarray(fit.results.model.exog)
    return [name for name, col in zip(fit.results.model.exog_names, X.T) if not col.any()]


def identification_notes(fit: Fit) -> list[str]:
    X = np.asarray(fit.results.model.exog)
    rank, k = int(np.linalg.matrix_rank(X)), X.shape[1]
    if rank == k:
        return []
    notes = [
        (
            f"The design of `{fit.formula}` has rank {rank} < {k} columns: not every coefficient "
            "is identified (some ls x Family combination has no run in the grid)."
        )
    ]
    empty = not_estimable(fit)
    if empty:
        notes.append(f"Not estimable (no run), left blank: {', '.join(f'`{n}`' for n in empty)}.")
    return notes


def gaussian_loglik(resid: np.ndarray) -> float:
    """Gaussian log-likelihood at the maximum-likelihood variance RSS/n."""
    n = len(resid)
    rss = float(np.sum(np.square(resid)))
    return -0.5 * n * (math.log(2 * math.pi * rss / n) + 1)


def aic_table(ols: Fit, glm: Fit) -> pd.DataFrame:
    """The two models' AIC on the same response (see AIC_CONVENTION); delta_aic is each
    model's distance to the lower one."""
    rows = []
    for name, fit in (("OLS", ols), ("GLM", glm)):
        res = fit.results
        if res is None:  # not fitted (see fit_glm)
            rows.append(
                {
                    "model": name,
                    "formula": fit.formula,
                    "family": "gaussian",
                    "link": fit.link,
                    "n": len(ols.results.model.endog),
                    "k": np.nan,
                    "loglik": np.nan,
                    "aic": np.nan,
                    "aic_statsmodels": np.nan,
                }
            )
            continue
        y = np.asarray(res.model.endog, dtype=float)
        resid = y - np.asarray(res.fittedvalues, dtype=float)
        k = round(res.df_model) + int(res.k_constant)
        loglik = gaussian_loglik(resid)
        aic = -2 * loglik + 2 * (k + 1)
        rows.append(
            {
                "model": name,
                "formula": fit.formula,
                "family": "gaussian",
                "link": fit.link,
                "n": len(y),
                "k": k,
                "loglik": loglik,
                "aic": aic,
                "aic_statsmodels": float(res.aic),
            }
        )
    table = pd.DataFrame(rows)
    table["delta_aic"] = table["aic"] - table["aic"].min()
    return table[["model", "formula", "family", "link", "n", "k", "loglik", "aic", "delta_aic", "aic_statsmodels"]]


def coefficient_table(fit: Fit, alpha: float = 0.05) -> pd.DataFrame:
    """Table 1: term, estimate, std_error, t, p (on the t distribution with the residual df,
    for the GLM too, as R) and the 1-alpha interval (no rows for a model that could not be
    fitted)."""
    res = fit.results
    if res is None:
        return pd.DataFrame(columns=["term", "estimate", "std_error", "t", "p", "ci_low", "ci_high"])
    ci = np.asarray(res.conf_int(alpha=alpha))
    stat = "t" if res.use_t else "z"
    table = pd.DataFrame(
        {
            "term": list(res.params.index),
            "estimate": np.asarray(res.params, dtype=float),
            "std_error": np.asarray(res.bse, dtype=float),
            stat: np.asarray(res.tvalues, dtype=float),
            "p": np.asarray(res.pvalues, dtype=float),
            "ci_low": ci[:, 0],
            "ci_high": ci[:, 1],
        }
    )
    table.loc[table["term"].isin(not_estimable(fit)), table.columns[1:]] = np.nan
    return table


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


# ---------------------------------------------------------------------------------------
# Tukey HSD
# ---------------------------------------------------------------------------------------


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
    table = table.reset_index(drop=True)
    pair_cols = [
        "group1",
        "group2",
        "model1",
        "size1",
        "model2",
        "size2",
        "meandiff",
        "p_adj",
        "lower",
        "upper",
        "reject",
    ]
    if len(table) < 2 or len(data) <= len(table):
        table[["halfwidth", "low", "high"]] = np.nan
        return pd.DataFrame(columns=pair_cols), table[_GROUP_COLS]
    labels = np.array([group_label(BACKBONES[b].short, s) for b, s in zip(data["backbone"], data["size"])])
    res = pairwise_tukeyhsd(np.asarray(data["DICE"], dtype=float), labels, alpha=alpha)
    names = [str(g) for g in res.groupsunique]
    nobs = table.set_index("group").loc[names, "n"].to_numpy(dtype=float)
    half = simultaneous_ci(res.q_crit, res.variance, nobs)
    table["halfwidth"] = table["group"].map(dict(zip(names, np.ravel(half))))
    table["low"] = table["mean"] - table["halfwidth"]
    table["high"] = table["mean"] + table["halfwidth"]

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
    pairs = pd.DataFrame(rows, columns=pair_cols)
    pairs = pairs.sort_values(["group1", "group2"], key=lambda c: c.map(rank)).reset_index(drop=True)
    return pairs, table[_GROUP_COLS]


_GROUP_COLS = ["model", "backbone", "size", "n", "mean", "sd", "halfwidth", "low", "high"]


# ---------------------------------------------------------------------------------------
# OLS predictions and "which model for my data size?"
# ---------------------------------------------------------------------------------------


def _design(fit: Fit, rows: pd.DataFrame) -> np.ndarray:
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
            x = _design(ols, grid_rows(data, backbone, size)).mean(axis=0)
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


def which_model(
    groups: pd.DataFrame, pairs: pd.DataFrame, predictions: pd.DataFrame, design: dict, ols: Fit, alpha: float = 0.05
) -> pd.DataFrame:
    """Per dataset size, every model ranked, with `best` marking the top model and those not
    significantly worse than it. Trained sizes: observed mean DICE, HSD interval and the
    HSD's adjusted p against the top model (no HSD: every model counts as best). Untrained
    sizes: ranked by the OLS-predicted DICE, p of its difference to the top model's
    prediction (t test, Holm-adjusted). The OLS prediction and its interval are given for
    every size."""
    from scipy import stats as st
    from statsmodels.stats.multitest import multipletests

    res = ols.results
    params, cov = np.asarray(res.params, dtype=float), np.asarray(res.cov_params(), dtype=float)
    p_hsd = {}
    for g1, g2, p in zip(pairs["group1"], pairs["group2"], pairs["p_adj"]):
        p_hsd[(g1, g2)] = p_hsd[(g2, g1)] = float(p)
    observed = groups.set_index(["backbone", "size"])
    out = []
    for size, block in predictions.groupby("size", sort=True):
        block = block.copy()
        trained = bool(block["trained"].iloc[0])
        if trained:
            for col in ("n", "mean", "low", "high"):
                block["hsd_" + col if col in ("low", "high") else col] = [
                    observed.at[(b, size), col] for b in block["backbone"]
                ]
            block = block.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
            top = group_label(block["model"].iloc[0], size)
            p_top = [np.nan] + [p_hsd.get((top, group_label(m, size)), np.nan) for m in block["model"].iloc[1:]]
            basis = "observed (Tukey HSD)"
        else:
            block[["n", "mean", "hsd_low", "hsd_high"]] = np.nan
            block = block.sort_values("predicted", ascending=False, kind="stable").reset_index(drop=True)
            top_x = design[(block["backbone"].iloc[0], size)]
            raw = []
            for b in block["backbone"].iloc[1:]:
                c = top_x - design[(b, size)]
                se = float(np.sqrt(max(c @ cov @ c, 0.0)))
                t = float(c @ params) / se if se > 0 else np.inf
                raw.append(2 * st.t.sf(abs(t), res.df_resid))
            p_top = [np.nan] + (list(multipletests(raw, method="holm")[1]) if raw else [])
            basis = "OLS prediction"
        block["p_vs_top"] = p_top
        block["best"] = [i == 0 or not np.isfinite(p) or p >= alpha for i, p in enumerate(p_top)]
        block["rank"] = np.arange(1, len(block) + 1)
        block["basis"] = basis
        out.append(block.rename(columns={"low": "predicted_low", "high": "predicted_high"}))
    table = pd.concat(out, ignore_index=True)
    return table[
        [
            "size",
            "trained",
            "basis",
            "rank",
            "model",
            "backbone",
            "best",
            "n",
            "mean",
            "hsd_low",
            "hsd_high",
            "p_vs_top",
            "predicted",
            "predicted_low",
            "predicted_high",
            "extrapolated",
        ]
    ]


def ranking_constant(predictions: pd.DataFrame) -> bool:
    """Whether the OLS's differences between models are the same at every size (a formula
    with no size x model interaction, like the paper's)."""
    wide = predictions.pivot(index="size", columns="backbone", values="predicted")
    diffs = wide.sub(wide.iloc[:, 0], axis=0)
    return bool(np.allclose(diffs.to_numpy(), diffs.iloc[[0]].to_numpy(), atol=1e-9))


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


DEPTH_NOTE = (
    "`ls[T.short]` is short minus long for EfficientNet (the reference family) at log(lr) = 0, "
    "i.e. lr = 1, outside the grid: the lr slopes differ by ls, so the difference between the "
    "depths depends on lr (and on the family). The short-versus-long difference at each "
    "trained lr follows, per family."
)


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
                return _design(ols, grid).mean(axis=0)

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


# ---------------------------------------------------------------------------------------
# GAM
# ---------------------------------------------------------------------------------------

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
        label = _gam_label(term)
        if not kept:
            notes.append(f"GAM term {label} dropped: the grid has a single level of {_and(term)}.")
        elif kept in terms:
            notes.append(
                f"GAM term {label} dropped: without its single-level variable(s) it repeats {_gam_label(kept)}."
            )
        else:
            if kept != term:
                notes.append(f"GAM term {label} reduced to {_gam_label(kept)} (single-level variable).")
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


def _gam_label(term: tuple[str, ...]) -> str:
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
        "Terms: " + (" + ".join(_gam_label(t) for t in fit.terms) or "none"),
        "Features in pygam's names:",
    ]
    for i, name in enumerate(GAM_FEATURES):
        if name in fit.levels:
            codes = ", ".join(f"{j}={_fmt_level(v)}" for j, v in enumerate(fit.levels[name]))
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
        label = _gam_label(term)
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


# ---------------------------------------------------------------------------------------
# Formatting: Markdown, LaTeX, HTML like the paper's tables
# ---------------------------------------------------------------------------------------


def fmt_num(x, digits: int = 4) -> str:
    """A number as the paper's tables print it; blank when missing."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return ""
    x = float(x)
    if x != 0 and (abs(x) < 10 ** -(digits - 1) or abs(x) >= 1e6):
        return f"{x:.{digits - 2}e}"
    return f"{x:.{digits}f}"


P_FLOOR = 1e-22  # below it the paper prints "< 1e-22": doubles carry no more than that


def fmt_p(p) -> str:
    """A p-value as the paper prints it: 3 decimals, 2 significant digits in e-notation below
    0.001, and "< 1e-22" below that."""
    if p is None or not np.isfinite(p):
        return ""
    if p < P_FLOOR:
        return f"< {P_FLOOR:.0e}"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def stars(p) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


STARS_LEGEND = "Significance: *** p < 0.001, ** p < 0.01, * p < 0.05, . p < 0.1."


@dataclass
class Formatted:
    """A table as text cells, with a title and notes, for Markdown, LaTeX and HTML."""

    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str]
    align: str  # one of l/r per column
    label: str = ""
    header_tex: list[str] | None = None


def to_markdown(t: Formatted) -> str:
    lines = [
        f"**{t.title}**",
        "",
        "| " + " | ".join(t.header) + " |",
        "|" + "|".join("---:" if a == "r" else ":---" for a in t.align) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    if t.notes:
        lines += [""] + [f"{n}  " for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def _tex_escape(text: str) -> str:
    out = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    out = out.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")
    out = out.replace("< ", r"$<$ ").replace("`", "")
    for plain, tex in (("R²", "$R^2$"), ("η²", r"$\eta^2$"), ("α", r"$\alpha$"), ("Δ", r"$\Delta$"), ("±", r"$\pm$")):
        out = out.replace(plain, tex)
    return out


def to_latex(t: Formatted) -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    header = t.header_tex or [_tex_escape(h) for h in t.header]
    lines = [
        "% needs \\usepackage{booktabs}",
        r"\begin{table}[htbp]",
        r"\centering",
        r"\caption{" + _tex_escape(t.title) + "}",
    ]
    if t.label:
        lines.append(r"\label{" + t.label + "}")
    lines += [r"\begin{tabular}{" + t.align + "}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for row in t.rows:
        if row and row[0] == "Residuals":
            lines.append(r"\midrule")
        lines.append(" & ".join(_tex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        lines.append(
            r"\par\smallskip\parbox{\linewidth}{\footnotesize " + " ".join(_tex_escape(n) for n in t.notes) + "}"
        )
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(tables: list[Formatted], intro=(), outro=()) -> str:
    """A standalone HTML page with the tables (for the Snakemake report, which shows HTML
    but only offers CSV for download)."""
    import html

    css = (
        "body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse;"
        "margin:0.5em 0 0.5em 0}th,td{padding:3px 9px;border-bottom:1px solid #ddd}"
        "th{border-bottom:2px solid #444}td.r,th.r{text-align:right}td.l,th.l{text-align:left}"
        "tr.best td{font-weight:bold}p.note{color:#444;font-size:12px;margin:2px 0}"
        "h3{margin:1.2em 0 0.2em 0}"
    )
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><style>" + css + "</style></head><body>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in intro]
    for t in tables:
        parts.append(f"<h3>{html.escape(t.title)}</h3><table><thead><tr>")
        parts += [f"<th class='{a}'>{html.escape(h)}</th>" for h, a in zip(t.header, t.align)]
        parts.append("</tr></thead><tbody>")
        for row in t.rows:
            cls = " class='best'" if row and row[-1] == "yes" else ""
            parts.append(
                f"<tr{cls}>" + "".join(f"<td class='{a}'>{html.escape(c)}</td>" for c, a in zip(row, t.align)) + "</tr>"
            )
        parts.append("</tbody></table>")
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in t.notes]
    parts += [f"<p class='note'>{html.escape(p)}</p>" for p in outro]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def format_table1(coef: pd.DataFrame, aic: pd.DataFrame, ols: Fit, glm: Fit, notes: list[str]) -> Formatted:
    res = ols.results
    rows = [
        [r.term, fmt_num(r.estimate), fmt_num(r.std_error), fmt_num(r.t, 3), fmt_p(r.p), stars(r.p)]
        for r in coef.itertuples()
    ]
    ols_aic = aic.loc[aic["model"] == "OLS"].iloc[0]
    glm_aic = aic.loc[aic["model"] == "GLM"].iloc[0]
    table_notes = (
        [
            (
                f"n = {int(res.nobs)} runs; R² = {res.rsquared:.4f}, adjusted R² = {res.rsquared_adj:.4f}; "
                f"residual standard error {math.sqrt(res.scale):.4f} on {int(res.df_resid)} df."
            ),
            f"AIC = {ols_aic['aic']:.2f} (log-link gaussian GLM `{glm_aic['formula']}`: "
            + (f"{glm_aic['aic']:.2f}). " if glm.results is not None else f"not fitted, {glm.failure}). ")
            + AIC_CONVENTION,
            STARS_LEGEND,
        ]
        + ([DEPTH_NOTE] if "ls[T.short]" in coef["term"].tolist() else [])
        + notes
    )
    return Formatted(
        f"Table 1: OLS {ols.formula}",
        ["Term", "Estimate", "Std. error", "t", "p", ""],
        rows,
        table_notes,
        "lrrrrl",
        "tab:ols",
        ["Term", "Estimate", "Std.\\ error", "$t$", "$p$", ""],
    )


def format_depth(depth: pd.DataFrame, alpha: float) -> Formatted:
    level = f"{100 * (1 - alpha):g} %"
    rows = [
        [
            r.Family,
            _fmt_level(r.lr),
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


def format_aic(aic: pd.DataFrame) -> Formatted:
    def f2(v):  # blank for a model that could not be fitted
        return f"{v:.2f}" if np.isfinite(v) else ""

    rows = [
        [
            r.model,
            r.formula,
            r.link,
            str(r.n),
            f"{r.k:.0f}" if np.isfinite(r.k) else "",
            f2(r.loglik),
            f2(r.aic),
            f2(r.delta_aic),
            f2(r.aic_statsmodels),
        ]
        for r in aic.itertuples()
    ]
    return Formatted(
        "AIC of the OLS and the log-link gaussian GLM (same response, DICE)",
        ["Model", "Formula", "Link", "n", "k", "log L", "AIC (R's AIC())", "ΔAIC", "statsmodels' aic"],
        rows,
        [AIC_CONVENTION, "The lower AIC fits better; ΔAIC > 10 is decisive."],
        "lllrrrrrr",
    )


def format_glm(coef: pd.DataFrame, glm: Fit, notes: list[str]) -> Formatted:
    rows = [
        [r.term, fmt_num(r.estimate), fmt_num(r.std_error), fmt_num(r.t, 3), fmt_p(r.p), stars(r.p)]
        for r in coef.itertuples()
    ]
    return Formatted(
        f"GLM (gaussian, {glm.link} link) {glm.requested}",
        ["Term", "Estimate", "Std. error", "t", "p", ""],
        rows,
        [f"Coefficients on the {glm.link} scale of mean {glm.response}.", GLM_INFERENCE, STARS_LEGEND] + notes,
        "lrrrrl",
    )


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


def pre_html(title: str, text: str) -> str:
    """A standalone HTML page showing preformatted text."""
    import html

    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>body{font-family:sans-serif;"
        "margin:1em}pre{font-size:12px}</style></head><body>\n"
        f"<h3>{html.escape(title)}</h3>\n<pre>{html.escape(text)}</pre>\n</body></html>\n"
    )


def format_which_model(table: pd.DataFrame, alpha: float, constant: bool) -> tuple[list[Formatted], list[str]]:
    """The summary ("best model(s) per size") and one table per size."""
    level = f"{100 * (1 - alpha):g} %"
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
    summary = Formatted(
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
    tables = []
    for size, block in table.groupby("size", sort=True):
        trained = bool(block["trained"].iloc[0])
        rows = []
        for r in block.itertuples():
            rows.append(
                [
                    str(r.rank),
                    r.model,
                    fmt_num(r.mean) if trained else "",
                    f"[{r.hsd_low:.4f}, {r.hsd_high:.4f}]" if trained and np.isfinite(r.hsd_low) else "",
                    fmt_num(r.predicted),
                    f"[{r.predicted_low:.4f}, {r.predicted_high:.4f}]",
                    fmt_p(r.p_vs_top),
                    "yes" if r.best else "",
                ]
            )
        notes = []
        if trained:
            notes.append(
                "Mean DICE observed over the size's runs (every lr, reg and fold); "
                f"interval: HSD simultaneous {level}; p vs top: Tukey HSD adjusted p."
            )
        else:
            notes.append(
                f"Not trained: ranked by the OLS-predicted mean DICE (averaged over the lr x reg grid), "
                f"{level} confidence interval; p vs top: Holm-adjusted t test of the difference."
            )
            if bool(block["extrapolated"].iloc[0]):
                notes.append("This size is outside the trained sizes: the prediction is an extrapolation.")
            if ((block["predicted"] > 1) | (block["predicted"] < 0)).any():
                notes.append("Some predictions leave DICE's range [0, 1]: the linear model does not hold this far out.")
        tables.append(
            Formatted(
                f"{size} images ({'trained' if trained else 'predicted by the OLS'})",
                ["Rank", "Model", "Mean DICE", f"HSD {level}", "OLS DICE", f"OLS {level}", "p vs top", "Best"],
                rows,
                notes,
                "rlrlrlrl",
            )
        )
    general = []
    if constant and table["model"].nunique() > 1:
        general.append(
            "The OLS formula has no dataset-size x model interaction, so its predicted "
            "differences between models, and its ranking, are the same at every size; "
            "the observed (HSD) ranking per trained size is the study's answer."
        )
    return [summary, *tables], general


# ---------------------------------------------------------------------------------------
# Everything, written
# ---------------------------------------------------------------------------------------


def analyse(
    metrics: pd.DataFrame,
    metric: str = "test_dice",
    ols_formula: str = PAPER_OLS,
    glm_formula: str = PAPER_GLM,
    predict_sizes=(3000,),
    alpha: float = 0.05,
) -> dict:
    """Every statistic of the study, as data frames and text (no file is written)."""
    if not 0 < alpha < 1:
        raise UnetcapError(f"analysis.alpha: {alpha} is not between 0 and 1")
    frame = model_frame(metrics, metric)
    data = frame.data
    ols = fit_ols(data, ols_formula)
    glm = fit_glm(data, glm_formula)
    aic = aic_table(ols, glm)
    coef = coefficient_table(ols, alpha)
    glm_coef = coefficient_table(glm, alpha)
    anova = anova_table(ols)
    paper = paper_comparison(coef, anova)
    depth = depth_contrasts(ols, data, alpha)
    pairs, groups = tukey_hsd(data, alpha)
    predictions, design = ols_predictions(ols, data, predict_sizes, alpha)
    which = which_model(groups, pairs, predictions, design, ols, alpha)
    gam = fit_gam(data)
    log.info(
        "OLS AIC %.2f, GLM AIC %.2f, %d HSD groups, %d pairs",
        aic["aic"].iloc[0],
        aic["aic"].iloc[1],
        len(groups),
        len(pairs),
    )
    notes = frame.notes + ols.notes + [f"GLM: {n}" for n in glm.notes] + gam.notes
    return {
        "frame": frame,
        "ols": ols,
        "glm": glm,
        "aic": aic,
        "coef": coef,
        "depth": depth,
        "paper": paper,
        "glm_coef": glm_coef,
        "anova": anova,
        "pairs": pairs,
        "groups": groups,
        "predictions": predictions,
        "which": which,
        "gam": gam,
        "gam_partial": gam_partial(gam, data, 1 - alpha),
        "notes": notes,
        "alpha": alpha,
        "constant_ranking": ranking_constant(predictions),
    }


def write_analysis(
    metrics_path,
    outdir,
    metric: str = "test_dice",
    ols_formula: str = PAPER_OLS,
    glm_formula: str = PAPER_GLM,
    predict_sizes=(3000,),
    alpha: float = 0.05,
    sample_size_path=None,
) -> list[Path]:
    """Read the merged metrics table and write every file of ANALYSIS_FILES into `outdir`;
    with `sample_size_path` (sample_size.csv), which_model leads with the images needed."""
    result = analyse(read_metrics(metrics_path), metric, ols_formula, glm_formula, predict_sizes, alpha)
    if sample_size_path is not None:
        path = Path(sample_size_path)
        if not path.is_file():
            raise UnetcapError(f"{path}: missing; the sample_size rule writes it")
        result["sample_size"] = pd.read_csv(path)
    return write_results(result, outdir)


def write_results(result: dict, outdir) -> list[Path]:
    """Write the results of `analyse` as the files of ANALYSIS_FILES into `outdir`, each
    atomically (a temporary name, then renamed)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def put(name, text):
        path = out / name
        write_text_atomic(path, text)
        written.append(path)

    def put_csv(name, table):
        put(name, table.to_csv(index=False, lineterminator="\n"))

    ols, glm, notes = result["ols"], result["glm"], result["notes"]
    model_notes = ols.notes
    t1 = format_table1(result["coef"], result["aic"], ols, glm, model_notes)
    t2 = format_anova(result["anova"], ols, model_notes)
    ta = format_aic(result["aic"])
    tg = format_glm(result["glm_coef"], glm, glm.notes)
    td = format_depth(result["depth"], result["alpha"])
    tables, general = format_which_model(result["which"], result["alpha"], result["constant_ranking"])
    hsd_tables = format_hsd(result["groups"], result["pairs"], result["alpha"])
    runs = result["frame"].runs
    for table in (t1, td, t2, ta, tg, *hsd_tables, *tables):  # each table says which runs it rests on
        table.notes.insert(0, runs)
    put_csv("table1_ols.csv", result["coef"])
    table1 = [t1, td] if len(result["depth"]) else [t1]
    put_csv("table1_depth.csv", result["depth"])
    put("table1_ols.md", "\n".join(to_markdown(t) for t in table1))
    put("table1_ols.tex", "\n".join(to_latex(t) for t in table1))
    put("table1_ols.html", to_html(table1))
    put_csv("paper.csv", result["paper"])
    put("paper.md", to_markdown(format_paper(result["paper"])))
    put_csv("table2_anova.csv", result["anova"])
    put("table2_anova.md", to_markdown(t2))
    put("table2_anova.tex", to_latex(t2))
    put("table2_anova.html", to_html([t2]))
    put_csv("aic.csv", result["aic"])
    put("aic.md", to_markdown(ta))
    put("aic.html", to_html([ta, tg]))
    put_csv("glm.csv", result["glm_coef"])
    put("glm.md", to_markdown(tg))
    put_csv("hsd.csv", result["pairs"])
    put_csv("hsd_groups.csv", result["groups"])
    put("hsd.html", to_html(hsd_tables))
    put_csv("predictions.csv", result["predictions"])
    which = result["which"]
    put_csv("which_model.csv", which)
    plan = []
    if result.get("sample_size") is not None:
        from unetcap.sample_size import plan_lines  # the learning curves' answer (sample_size.csv)

        plan = [
            "How many images do I need? (learning curves a - b N^(-c), sample_size.md)",
            *plan_lines(result["sample_size"]),
        ]
    put(
        "which_model.md",
        "# Which model for my data size?\n\n"
        + "".join(f"{p}  \n" for p in plan)
        + ("\n" if plan else "")
        + "\n".join(to_markdown(t) for t in tables)
        + "".join(f"\n{g}\n" for g in general),
    )
    put("which_model.html", to_html(tables, plan, [*general, *(f"Note: {n}" for n in notes)]))
    summary = runs + "\n" + gam_summary(result["gam"])
    put("gam_summary.txt", summary)
    put("gam_summary.html", pre_html("GAM summary", summary))
    put_csv("gam_partial.csv", result["gam_partial"])
    put(
        "notes.md",
        "# Notes on the analysis\n\n"
        + "".join(
            f"- {n}\n"
            for n in notes
            + [
                AIC_CONVENTION,
                ANOVA_CAPTION,
                f"OLS: `{ols.formula}`; GLM: `{glm.formula}` ({glm.link} link, response {glm.response}).",
            ]
        ),
    )
    return written
