"""The linear models of the study (docs/design.md §11): the paper's OLS (Table 1), the
log-link gaussian GLM on DICE itself, both fitted with statsmodels, and their AIC counted as
R's `AIC()` counts it.

`log(...)` on the left of the GLM formula names the link, as in the paper; the response is
DICE itself, so both models' AIC are likelihoods of the same numbers and can be compared.

statsmodels is imported where a model is fitted: the sample-size backtest imports this module,
and the figures import the backtest, without needing statsmodels loaded.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.formula import (
    FORMULA_ENV,
    PAPER_GLM,
    PAPER_OLS,
    formula_errors,
    patsy_engine,
    split_formula,
    usable_formula,
)
from unetcap.analysis.render import STARS_LEGEND, Formatted, fmt_num, fmt_p, stars

AIC_CONVENTION = (
    "AIC = -2 log L + 2 (k + 1): k coefficients of the mean plus the residual variance, as R's "
    "AIC() counts them for lm and glm; log L is the gaussian likelihood at the maximum-likelihood "
    "variance RSS/n for both models. Column aic_statsmodels is statsmodels' own `aic` of each "
    "fit: for the OLS -2 log L + 2 k (the variance not counted, 2 lower); for the GLM -2 log L + "
    "2 k with log L at statsmodels' dispersion estimate RSS/(n - k) instead of RSS/n."
)
GLM_INFERENCE = (
    "Standard errors from the dispersion estimated as Pearson χ² / (n - k), t and p on the t "
    "distribution with the n - k residual degrees of freedom, as R's summary.glm computes them; "
    "intervals Wald-type, estimate ± t quantile (n - k df) x standard error (R's confint for a "
    "glm profiles the likelihood instead)."
)
# IRLS stops when no coefficient moves by more than this (relative, or absolute near 0).
# statsmodels' default stops on the deviance, which is flat at its minimum: at 1e-8 it left
# coefficients up to 1e-6 (relative) from the maximum of the likelihood.
GLM_TOL = 1e-12


DEPTH_NOTE = (
    "`ls[T.short]` is short minus long for EfficientNet (the reference family) at log(lr) = 0, "
    "i.e. lr = 1, outside the grid: the lr slopes differ by ls, so the difference between the "
    "depths depends on lr (and on the family). The short-versus-long difference at each "
    "trained lr follows, per family."
)


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
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning

    used, terms, notes = usable_formula(formula, data)
    with patsy_engine(), warnings.catch_warnings(), formula_errors("analysis.ols_formula", formula):
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
    from statsmodels.tools.sm_exceptions import SingularMatrixWarning

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
    with patsy_engine(), warnings.catch_warnings(), formula_errors("analysis.glm_formula", formula):
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


def not_estimable(fit: Fit) -> list[str]:
    """Coefficients whose design column is all zero: no run has that combination (an ls x
    Family cell of a backbone that is not in the grid)."""
    X = np.asarray(fit.results.model.exog)
    return [name for name, col in zip(fit.results.model.exog_names, X.T) if not col.any()]


def saturated(fit: Fit) -> bool:
    """Whether the fit has no residual degrees of freedom (as many identified coefficients
    as runs): it passes through every run, so no variance, standard error, test or AIC."""
    return fit.results is not None and fit.results.df_resid <= 0


def identification_notes(fit: Fit) -> list[str]:
    X = np.asarray(fit.results.model.exog)
    rank, k = int(np.linalg.matrix_rank(X)), X.shape[1]
    notes = []
    if rank < k:
        notes.append(
            f"The design of `{fit.formula}` has rank {rank} < {k} columns: not every coefficient "
            "is identified (some ls x Family combination has no run in the grid)."
        )
        empty = not_estimable(fit)
        if empty:
            notes.append(f"Not estimable (no run), left blank: {', '.join(f'`{n}`' for n in empty)}.")
    if saturated(fit):
        notes.append(
            f"`{fit.formula}` has no residual degrees of freedom ({X.shape[0]} runs for {rank} identified "
            "coefficients): it passes through every run, so its standard errors, tests, intervals and AIC "
            "are not identified and are left blank."
        )
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
        loglik = np.nan if saturated(fit) else gaussian_loglik(resid)  # RSS 0: no likelihood maximum
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
                "aic_statsmodels": np.nan if saturated(fit) else float(res.aic),
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
    if saturated(fit):
        table.loc[:, table.columns[2:]] = np.nan
    return table


def format_table1(coef: pd.DataFrame, aic: pd.DataFrame, ols: Fit, glm: Fit, notes: list[str]) -> Formatted:
    res = ols.results
    rows = [
        [r.term, fmt_num(r.estimate), fmt_num(r.std_error), fmt_num(r.t, 3), fmt_p(r.p), stars(r.p)]
        for r in coef.itertuples()
    ]
    ols_aic = aic.loc[aic["model"] == "OLS"].iloc[0]
    glm_aic = aic.loc[aic["model"] == "GLM"].iloc[0]

    def aic_text(row, lead=""):  # blank AIC: a fit with no residual df (see identification_notes)
        return f"{lead}{row['aic']:.2f}" if np.isfinite(row["aic"]) else "not identified, no residual df"

    fit_line = (
        f"n = {int(res.nobs)} runs; R² = {res.rsquared:.4f}, adjusted R² = {res.rsquared_adj:.4f}; "
        f"residual standard error {math.sqrt(res.scale):.4f} on {int(res.df_resid)} df."
        if not saturated(ols)
        else f"n = {int(res.nobs)} runs; no residual df: the OLS passes through every run (R² = 1)."
    )
    table_notes = (
        [
            fit_line,
            f"AIC {aic_text(ols_aic, '= ')} (log-link gaussian GLM `{glm_aic['formula']}`: "
            + (f"{aic_text(glm_aic)}). " if glm.results is not None else f"not fitted, {glm.failure}). ")
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
