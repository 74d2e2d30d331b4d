"""unetcap.analysis against R on a generated study table with runs missing (unbalanced, diverged
runs at DICE 0): lm, car::Anova (type 2), glm (gaussian, log link), AIC and TukeyHSD, run by
tests/r_reference.R. Where the algorithms are the same the numbers agree to 1e-9 (the
Tukey quantiles and p-values, computed differently, to 1e-5). The GAM's spline on
log(Dataset) against mgcv's (tests/r_gam.R), whose smoothing criterion differs: its edf to
GAM_EDF_TOL. The tests skip only when Rscript is not installed (Debian: `apt-get install
r-base-core r-cran-car r-cran-mgcv`)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic

from unetcap.analysis.gam import fit_gam, term_table
from unetcap.analysis.hsd import group_label
from unetcap.analysis.table import model_frame

HERE = Path(__file__).resolve().parent
RSCRIPT = shutil.which("Rscript")
pytestmark = pytest.mark.skipif(
    RSCRIPT is None,
    reason="Rscript not found: R is needed to compare with R's numbers "
    "(Debian: apt-get install r-base-core r-cran-car r-cran-mgcv)",
)
TOL = 1e-9
# R's ptukey integrates with a 16-point Gauss-Legendre rule and its qtukey "will be accurate
# to the 4th decimal place" (R's ?ptukey); statsmodels takes scipy's studentized_range, which
# integrates adaptively. The HSD's adjusted p and intervals agree to what R's quadrature gives.
TUKEY_TOL = 1e-5
# Our GAM chooses each term's λ by GCV (pygam has no REML), mgcv by REML: different criteria,
# so the spline's edf agrees only roughly (3.88 against mgcv's 3.77, and 3.98 against 3.81 with
# an lr slope per family, where one λ shared by every term gave 5.66). mgcv's own GCV gives
# 3.2 to 3.4 on these tables.
GAM_EDF_TOL = 0.5


def r_name(term: str) -> str:
    """A patsy term or coefficient name as R writes it, its parts sorted (R puts factors
    before numeric variables: `lslong:FamilyEfficientNet:log(lr)`): `ls[long]:Family[T.ResNet]`
    -> `FamilyResNet:lslong`, `Intercept` -> `(Intercept)`."""
    term = "(Intercept)" if term == "Intercept" else re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", term)
    return ":".join(sorted(term.split(":")))


def largest_difference(ours, theirs) -> float:
    """The largest difference, relative to R's value where that is above 1 in size."""
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    assert ours.shape == theirs.shape and np.isfinite(ours).all() and np.isfinite(theirs).all()
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1.0)))


def r_tables(result: dict, folder: Path) -> dict[str, pd.DataFrame]:
    """R's tables (see r_reference.R) for the frame and formulas of an `analyse` result."""
    data = result["frame"].data
    data = data.assign(group=[group_label(m, s) for m, s in zip(data["model"], data["size"])])
    data[["DICE", "ls", "Family", "Dataset", "lr", "reg", "group"]].to_csv(
        folder / "frame.csv", index=False, float_format="%.17g"
    )
    glm = result["glm"]
    glm_formula = f"{glm.response} ~ {glm.formula.split('~', 1)[1].strip()}"
    run = subprocess.run(
        [
            RSCRIPT,
            str(HERE / "r_reference.R"),
            str(folder / "frame.csv"),
            str(folder),
            result["ols"].formula,
            glm_formula,
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    return {name: pd.read_csv(folder / f"{name}.csv") for name in ("ols", "anova", "glm", "aic", "hsd")}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """(our analysis, R's tables) of the same generated table."""
    result = synthetic.analysed(seed=1, missing=0.15)[2]
    return result, r_tables(result, tmp_path_factory.mktemp("r"))


def _by_term(ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    ours = ours.assign(term=ours["term"].map(r_name)).set_index("term")
    theirs = theirs.assign(term=theirs["term"].map(r_name)).set_index("term")
    assert sorted(ours.index) == sorted(theirs.index)
    return ours, theirs.loc[ours.index]


def test_ols_coefficients_as_lm(compared):
    result, r = compared
    ours, theirs = _by_term(result["coef"], r["ols"])
    for col in ("estimate", "std_error", "t", "p"):
        assert largest_difference(ours[col], theirs[col]) < TOL, col


def test_type2_anova_as_car(compared):
    result, r = compared
    ours, theirs = _by_term(result["anova"], r["anova"])
    assert (ours["df"] == theirs["df"]).all()
    assert largest_difference(ours["sum_sq"], theirs["sum_sq"]) < TOL
    terms = ours.index != "Residuals"
    for col in ("F", "p"):
        assert largest_difference(ours.loc[terms, col], theirs.loc[terms, col]) < TOL, col


def test_glm_as_r_glm_gaussian_log_link(compared):
    result, r = compared
    ours, theirs = _by_term(result["glm_coef"], r["glm"])
    for col in ("estimate", "std_error", "t", "p", "ci_low", "ci_high"):
        assert largest_difference(ours[col], theirs[col]) < TOL, col


def test_aic_as_r_aic(compared):
    result, r = compared
    ours, theirs = result["aic"].set_index("model"), r["aic"].set_index("model").loc[["OLS", "GLM"]]
    assert (ours["k"] + 1 == theirs["df"]).all()  # R counts the variance
    for col in ("loglik", "aic"):
        assert largest_difference(ours[col], theirs[col]) < TOL, col


def test_tukey_hsd_as_r_tukeyhsd(compared):
    result, r = compared
    pairs = result["pairs"]
    theirs = r["hsd"]
    # R lists each pair once, in either order; ours in the figures' order
    key = {frozenset(p): i for i, p in enumerate(zip(theirs["group1"], theirs["group2"]))}
    rows = [key[frozenset(p)] for p in zip(pairs["group1"], pairs["group2"])]
    theirs = theirs.iloc[rows].reset_index(drop=True)
    sign = np.where(theirs["group2"] == pairs["group2"], 1.0, -1.0)
    assert len(pairs) == len(r["hsd"]) == 630
    assert largest_difference(pairs["meandiff"], sign * theirs["diff"]) < TOL
    lower = np.where(sign > 0, theirs["lwr"], -theirs["upr"])
    upper = np.where(sign > 0, theirs["upr"], -theirs["lwr"])
    assert largest_difference(pairs["lower"], lower) < TUKEY_TOL
    assert largest_difference(pairs["upper"], upper) < TUKEY_TOL
    assert largest_difference(pairs["p_adj"], theirs["p_adj"]) < TUKEY_TOL


def mgcv_spline_edf(data: pd.DataFrame, folder: Path) -> float:
    """The edf of mgcv's spline on log(Dataset) (REML, tests/r_gam.R) for a model frame."""
    data[["DICE", "ls", "Family", "Dataset", "lr", "reg"]].to_csv(
        folder / "frame.csv", index=False, float_format="%.17g"
    )
    run = subprocess.run(
        [RSCRIPT, str(HERE / "r_gam.R"), str(folder / "frame.csv"), str(folder)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(folder / "gam.csv").set_index("term")
    return float(table.at["s(log(Dataset))", "edf"])


@pytest.mark.parametrize("strength", [0.0, 0.1], ids=["generated", "lr slope per family"])
def test_gam_spline_edf_near_mgcv_reml(strength, compared, tmp_path):
    """The spline on log(Dataset) as smooth as mgcv makes it: on the compared table, and on
    one with a strong lr x family interaction, where a λ shared by every term interpolated."""
    if strength == 0:
        result = compared[0]
        data, ours = result["frame"].data, result["gam_terms"]
    else:
        data = model_frame(synthetic.with_lr_slope_per_family(synthetic.metrics_table(seed=0), strength)).data
        ours = term_table(fit_gam(data))
    edf = float(ours.set_index("term").at["s(log(Dataset))", "edf"])
    assert abs(edf - mgcv_spline_edf(data, tmp_path)) < GAM_EDF_TOL
