"""The statistics (unetcap.analysis) on generated merged tables: the paper's full 1620-run grid,
an unbalanced one with runs missing, and degenerate demo/test grids."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import synthetic
from scipy import stats as st

from unetcap import UnetcapError
from unetcap.analysis.anova import anova_table
from unetcap.analysis.formula import PAPER_GLM, PAPER_OLS, split_formula
from unetcap.analysis.gam import (
    GAM_SPLINE_LAMBDAS,
    GAM_TERMS,
    fit_gam,
    gam_design,
    gam_label,
    gam_summary,
    term_table,
)
from unetcap.analysis.hsd import group_label, tukey_hsd
from unetcap.analysis.linear import AIC_CONVENTION, DEPTH_NOTE, GLM_INFERENCE, coefficient_table, fit_glm, fit_ols
from unetcap.analysis.predict import grid_rows
from unetcap.analysis.render import fmt_p
from unetcap.analysis.run import analyse, write_analysis, write_results
from unetcap.analysis.table import LEARNED_FLOOR, model_frame, read_metrics

PAPER_TERMS = [
    "Intercept",
    "ls[T.short]",
    "ls[long]:Family[T.ResNet]",
    "ls[short]:Family[T.ResNet]",
    "ls[long]:Family[T.VGG]",
    "ls[short]:Family[T.VGG]",
    "log(Dataset)",
    "log(lr):ls[long]:Family[EfficientNet]",
    "log(lr):ls[short]:Family[EfficientNet]",
    "log(lr):ls[long]:Family[ResNet]",
    "log(lr):ls[short]:Family[ResNet]",
    "log(lr):ls[long]:Family[VGG]",
    "log(lr):ls[short]:Family[VGG]",
    "log(reg)",
]
ANOVA_TERMS = ["ls", "ls:Family", "log(Dataset)", "log(lr):ls:Family", "log(reg)", "Residuals"]
DEMO_GRID = {"sizes": (200, 400), "lrs": (0.001,), "regs": (0.0001,), "folds": 2}


@pytest.fixture(scope="module")
def full():
    return synthetic.analysed(seed=0)


@pytest.fixture(scope="module")
def unbalanced():
    return synthetic.analysed(seed=1, missing=0.15)


def paper_design(data: pd.DataFrame) -> np.ndarray:
    """The paper's OLS design matrix built by hand (treatment coding, reference long and
    EfficientNet), independent of patsy."""
    long_, short = (data["ls"] == "long").to_numpy(float), (data["ls"] == "short").to_numpy(float)
    fam = {f: (data["Family"] == f).to_numpy(float) for f in ("EfficientNet", "ResNet", "VGG")}
    loglr = np.log(data["lr"].to_numpy())
    cols = [
        np.ones(len(data)),
        short,
        long_ * fam["ResNet"],
        short * fam["ResNet"],
        long_ * fam["VGG"],
        short * fam["VGG"],
        np.log(data["Dataset"].to_numpy()),
    ]
    for f in ("EfficientNet", "ResNet", "VGG"):
        cols += [loglr * long_ * fam[f], loglr * short * fam[f]]
    cols.append(np.log(data["reg"].to_numpy()))
    return np.column_stack(cols)


# ------------------------------------------------------------------------------ OLS, Table 1


def test_generated_tables_have_the_paper_grid(full, unbalanced):
    assert len(full[0]) == 1620
    assert 1200 < len(unbalanced[0]) < 1500
    assert full[2]["frame"].data["DICE"].between(0, 1).all()


@pytest.mark.parametrize("which", ["full", "unbalanced"])
def test_ols_term_names_are_the_papers_and_match_numpy_least_squares(which, request):
    result = request.getfixturevalue(which)[2]
    data, res = result["frame"].data, result["ols"].results
    assert list(res.params.index) == PAPER_TERMS
    assert list(result["coef"]["term"]) == PAPER_TERMS
    X = paper_design(data)
    beta, *_ = np.linalg.lstsq(X, data["DICE"].to_numpy(), rcond=None)
    np.testing.assert_allclose(res.params.to_numpy(), beta, rtol=1e-7, atol=1e-10)


def test_table1_standard_errors_t_and_p(full):
    result = full[2]
    coef, res = result["coef"], result["ols"].results
    data = result["frame"].data
    X = paper_design(data)
    resid = data["DICE"].to_numpy() - X @ coef["estimate"].to_numpy()
    df = len(data) - X.shape[1]
    se = np.sqrt(np.diag(np.linalg.inv(X.T @ X)) * (resid @ resid) / df)
    np.testing.assert_allclose(coef["std_error"], se, rtol=1e-7)
    np.testing.assert_allclose(coef["t"], coef["estimate"] / coef["std_error"], rtol=1e-10)
    np.testing.assert_allclose(coef["p"], 2 * st.t.sf(np.abs(coef["t"]), df), rtol=1e-8, atol=1e-300)
    assert res.df_resid == df == 1606


def test_aic_convention_counts_the_variance_like_r(full):
    result = full[2]
    aic, ols, glm = result["aic"], result["ols"].results, result["glm"].results
    row = aic.set_index("model")
    # aic_statsmodels is statsmodels' own aic of each fit; the OLS's leaves the variance out
    # (2 lower than R's), the GLM's takes log L at the dispersion RSS/(n - k), not RSS/n.
    assert row.at["OLS", "aic_statsmodels"] == ols.aic and row.at["GLM", "aic_statsmodels"] == glm.aic
    assert row.at["OLS", "aic"] - ols.aic == pytest.approx(2.0)
    n, k = int(glm.nobs), 14
    rss = float(np.sum(glm.resid_response**2))
    assert glm.aic == pytest.approx(n * (np.log(2 * np.pi * rss / (n - k)) + 1) - k + 2 * k, rel=1e-12)
    assert row.at["GLM", "aic"] - glm.aic != pytest.approx(2.0, abs=1e-6)  # not the OLS convention
    assert row.at["OLS", "k"] == 14 and row.at["GLM", "k"] == 14
    # Both likelihoods at the maximum-likelihood variance RSS/n of the same response, DICE.
    y = result["frame"].data["DICE"].to_numpy()
    n = len(y)
    for name, res in (("OLS", ols), ("GLM", glm)):
        rss = np.sum((y - res.fittedvalues) ** 2)
        assert row.at[name, "loglik"] == pytest.approx(-n / 2 * (np.log(2 * np.pi * rss / n) + 1), rel=1e-12)
        assert row.at[name, "aic"] == pytest.approx(-2 * row.at[name, "loglik"] + 2 * (14 + 1), rel=1e-12)
    assert ols.llf == pytest.approx(row.at["OLS", "loglik"], rel=1e-12)
    assert row["delta_aic"].min() == 0
    assert "R's" in AIC_CONVENTION


def test_glm_uses_the_log_link_on_dice(full):
    import statsmodels.api as sm

    glm = full[2]["glm"]
    assert glm.link == "log" and glm.response == "DICE"
    assert isinstance(glm.results.model.family.link, sm.families.links.Log)
    assert glm.formula == PAPER_GLM
    assert "lr:ls[long]:Family[EfficientNet]" in glm.results.params.index
    assert glm.results.converged


def test_glm_inference_is_on_t_with_the_residual_df_and_irls_runs_to_the_maximum(full):
    """As R's summary.glm: dispersion Pearson χ² / (n - k), t on n - k df; and IRLS stopped
    where one more step moves no coefficient by more than 1e-10 (relative)."""
    result = full[2]
    res, coef = result["glm"].results, result["glm_coef"]
    df = res.df_resid
    assert df == res.nobs - 14
    assert res.scale == pytest.approx(np.sum(res.resid_pearson**2) / df, rel=1e-12)
    np.testing.assert_allclose(coef["p"], 2 * st.t.sf(np.abs(coef["t"]), df), rtol=1e-10, atol=1e-300)
    q = st.t.ppf(0.975, df)
    np.testing.assert_allclose(coef["ci_high"], coef["estimate"] + q * coef["std_error"], rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = res.model.fit(start_params=res.params, maxiter=1, tol=0)
    change = np.abs(step.params - res.params) / np.maximum(np.abs(res.params), 1e-12)
    assert change.max() < 1e-10
    assert "t distribution with the n - k residual degrees of freedom" in GLM_INFERENCE


# ------------------------------------------------------------------------------ ANOVA, Table 2


@pytest.mark.parametrize("which", ["full", "unbalanced"])
def test_anova_rows_and_partial_eta_squared(which, request):
    result = request.getfixturevalue(which)[2]
    anova, res = result["anova"], result["ols"].results
    assert list(anova["term"]) == ANOVA_TERMS
    assert list(anova["df"][:-1]) == [1, 4, 1, 6, 1]
    resid = anova.set_index("term").loc["Residuals"]
    assert resid["sum_sq"] == pytest.approx(res.ssr) and resid["df"] == res.df_resid
    terms = anova[anova["term"] != "Residuals"]
    np.testing.assert_allclose(terms["partial_eta_sq"], terms["sum_sq"] / (terms["sum_sq"] + res.ssr))
    # the paper's column: shares of the summed SS, Residuals included, adding up to 1
    np.testing.assert_allclose(anova["eta_sq"], anova["sum_sq"] / anova["sum_sq"].sum())
    assert anova["eta_sq"].sum() == pytest.approx(1.0) and anova["eta_sq"].iloc[-1] > 0
    if which == "full":  # balanced: the SS add up to the total sum of squares of DICE
        assert anova["sum_sq"].sum() == pytest.approx(res.centered_tss)
    np.testing.assert_allclose(terms["F"], terms["sum_sq"] / terms["df"] / (res.ssr / res.df_resid))
    assert np.isnan(resid["partial_eta_sq"]) and np.isnan(resid["F"])


def _ssr(formula, data):
    return fit_ols(data, formula).results.ssr


def test_anova_is_type2_equal_to_type1_on_the_full_grid_not_with_runs_missing(full, unbalanced):
    from statsmodels.stats.anova import anova_lm

    res = full[2]["ols"].results
    for typ in (1, 2):
        np.testing.assert_allclose(full[2]["anova"]["sum_sq"], anova_lm(res, typ=typ)["sum_sq"], rtol=1e-8)
    res = unbalanced[2]["ols"].results
    t2 = anova_lm(res, typ=2)
    np.testing.assert_allclose(unbalanced[2]["anova"]["sum_sq"], t2["sum_sq"], rtol=1e-8)
    np.testing.assert_allclose(unbalanced[2]["anova"]["p"][:-1], t2["PR(>F)"][:-1], rtol=1e-6)
    t1 = anova_lm(res, typ=1)["sum_sq"].to_numpy()
    assert not np.allclose(t1[:-1], t2["sum_sq"].to_numpy()[:-1], rtol=1e-6)


def test_anova_by_model_comparison_when_a_family_lacks_a_depth():
    """Without vgg19 the long x VGG cell is empty: the design is rank-deficient, the cell's
    coefficients are blank, and type 2 SS and df still come from model comparisons."""
    metrics = synthetic.metrics_table(
        seed=8, sizes=(200, 1000), lrs=(0.01, 0.001), backbones=("resnet18", "resnet50", "vgg16"), folds=2
    )
    data = model_frame(metrics).data
    ols = fit_ols(data)
    assert any("rank 8 < 10 columns" in n for n in ols.notes)
    coef = coefficient_table(ols).set_index("term")
    assert coef.loc[["ls[long]:Family[T.VGG]", "log(lr):ls[long]:Family[VGG]"]].isna().all().all()
    anova = anova_table(ols).set_index("term")
    base = "DICE ~ log(Dataset) + log(reg)"
    assert anova.at["ls", "sum_sq"] == pytest.approx(_ssr(base, data) - _ssr(base + " + ls", data), rel=1e-8)
    assert anova.at["ls:Family", "sum_sq"] == pytest.approx(
        _ssr(base + " + ls", data) - _ssr(base + " + ls + ls:Family", data), rel=1e-8
    )
    assert anova.at["ls:Family", "df"] == 1 and anova.at["log(lr):ls:Family", "df"] == 3
    assert anova.at["log(lr):ls:Family", "sum_sq"] == pytest.approx(
        _ssr(PAPER_OLS.replace(" + log(lr):ls:Family", ""), data) - ols.results.ssr, rel=1e-8
    )


# ------------------------------------------------------------------------------ Tukey HSD


@pytest.mark.parametrize("which", ["full", "unbalanced"])
def test_hsd_has_36_groups_and_630_pairs(which, request):
    result = request.getfixturevalue(which)[2]
    pairs, groups = result["pairs"], result["groups"]
    assert len(groups) == 36 and len(pairs) == 630
    assert list(dict.fromkeys(groups["model"])) == ["B0", "B5", "R18", "R50", "V16", "V19"]
    data = result["frame"].data
    means = data.groupby(["model", "size"])["DICE"].mean()
    np.testing.assert_allclose(groups["mean"], [means[(m, s)] for m, s in zip(groups["model"], groups["size"])])
    assert groups["n"].sum() == len(data)
    # meandiff = group2 - group1, inside its interval; reject when the interval misses 0
    lookup = groups.set_index(["model", "size"])["mean"]
    diffs = [
        lookup[(m2, s2)] - lookup[(m1, s1)]
        for m1, s1, m2, s2 in zip(pairs["model1"], pairs["size1"], pairs["model2"], pairs["size2"])
    ]
    np.testing.assert_allclose(pairs["meandiff"], diffs, atol=1e-12)
    assert ((pairs["lower"] <= pairs["meandiff"]) & (pairs["meandiff"] <= pairs["upper"])).all()
    assert (pairs["reject"] == ((pairs["lower"] > 0) | (pairs["upper"] < 0))).all()
    assert (pairs["reject"] == (pairs["p_adj"] < 0.05)).all()


def test_hsd_intervals_are_statsmodels_simultaneous_intervals():
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    metrics = synthetic.metrics_table(seed=2, missing=0.2, sizes=(200, 1000), lrs=(0.01, 0.001))
    data = model_frame(metrics).data
    _, groups = tukey_hsd(data)
    labels = [group_label(m, s) for m, s in zip(data["model"], data["size"])]
    res = pairwise_tukeyhsd(data["DICE"].to_numpy(), labels)
    res._simultaneous_ci()  # what statsmodels' plot_simultaneous draws
    half = dict(zip(res.groupsunique, res.halfwidths))
    np.testing.assert_allclose(
        groups["halfwidth"], [half[group_label(m, s)] for m, s in zip(groups["model"], groups["size"])]
    )
    assert groups["halfwidth"].nunique() > 1  # unequal group sizes, unequal intervals


# ------------------------------------------------------------------------------ which model


def test_which_model_per_size(full):
    result = full[2]
    which, pairs = result["which"], result["pairs"]
    assert sorted(which["size"].unique()) == [200, 500, 1000, 2500, 3000, 5000, 10000]
    for _, block in which.groupby("size"):
        assert len(block) == 6 and list(block["rank"]) == [1, 2, 3, 4, 5, 6]
        assert block["best"].iloc[0]
        key = "mean" if block["trained"].iloc[0] else "predicted"
        assert block[key].is_monotonic_decreasing
        assert (block["best"].iloc[1:] == (block["p_vs_top"].iloc[1:] >= 0.05)).all()
    untrained = which[~which["trained"]]
    assert (untrained["size"] == 3000).all() and (untrained["basis"] == "OLS prediction").all()
    assert untrained["mean"].isna().all() and not untrained["extrapolated"].any()
    assert (untrained["predicted_low"] < untrained["predicted"]).all()
    # the HSD p against the top model is the pair's p
    block = which[which["size"] == 200]
    top, second = block.iloc[0], block.iloc[1]
    pair = pairs[
        ((pairs["group1"] == f"{top.model} 200") & (pairs["group2"] == f"{second.model} 200"))
        | ((pairs["group2"] == f"{top.model} 200") & (pairs["group1"] == f"{second.model} 200"))
    ]
    assert second["p_vs_top"] == pytest.approx(pair["p_adj"].iloc[0])


def test_predictions_average_the_ols_over_the_lr_reg_grid(full):
    result = full[2]
    res, pred, data = result["ols"].results, result["predictions"], result["frame"].data
    row = pred[(pred["backbone"] == "resnet50") & (pred["size"] == 3000)].iloc[0]
    grid = grid_rows(data, "resnet50", 3000)
    assert len(grid) == 9
    assert row["predicted"] == pytest.approx(res.predict(grid).mean(), rel=1e-12)
    assert not row["trained"] and row["low"] < row["predicted"] < row["high"]
    assert result["constant_ranking"]  # the paper's OLS has no size x model interaction


# ------------------------------------------------------------------------------ GAM


def test_gam_terms_summary_and_partial_dependence(full):
    result = full[2]
    gam = result["gam"]
    assert gam.terms == list(GAM_TERMS)
    text = gam_summary(gam)
    assert "LinearGAM" in text and "te(lr, ls, Family)" in text and "1: ls (factor: 0=long, 1=short)" in text
    partial = result["gam_partial"]
    assert list(dict.fromkeys(partial["term"])) == [gam_label(t) for t in GAM_TERMS]
    spline = partial[partial["term"] == "s(log(Dataset))"]
    assert len(spline) == 100 and spline["effect"].iloc[-1] > spline["effect"].iloc[0]
    assert (partial["low"] <= partial["effect"]).all() and (partial["effect"] <= partial["high"]).all()
    assert len(partial[partial["term"] == "te(lr, ls, Family)"]) == 18


def test_gam_smoothing_is_chosen_per_term_and_reported(full):
    """Each term its own λ, by GCV on its own grid; the table and the Markdown give edf, λ and
    the criterion per term, and the caption says why lr and reg are factors."""
    result, folder = full[2], full[3]
    fit = result["gam"]
    terms = result["gam_terms"].set_index("term")
    assert list(terms.index) == [*(gam_label(t) for t in GAM_TERMS), "intercept"]
    assert (terms["criterion"] == "GCV").all() and len(set(fit.lams)) > 1
    assert list(terms["lam"].iloc[:-1]) == fit.lams
    assert terms["edf"].sum() == pytest.approx(fit.gam.statistics_["edof"], rel=1e-9)
    assert 2 < terms.at["s(log(Dataset))", "edf"] < 3.5  # 6 sizes; mgcv, same terms and GCV, gives 3.11
    # the spline's λ is a minimum of GCV on its grid, the other terms held
    X, _ = gam_design(result["frame"].data)
    y = result["frame"].data["DICE"].to_numpy()
    at = GAM_SPLINE_LAMBDAS.index(fit.lams[0])
    for step in (-1, 1):
        other = copy.deepcopy(fit.gam)
        other.lam = [[GAM_SPLINE_LAMBDAS[at + step]], *fit.gam.lam[1:]]
        assert other.fit(X, y).statistics_["GCV"] >= fit.gam.statistics_["GCV"]
    md = (folder / "gam_summary.md").read_text()
    assert "| s(log(Dataset)) | spline on log(Dataset) | 8 |" in md and "smoothing per term by GCV" in md
    assert "lr and L2 (reg) enter as factors" in md and "spline on log(Dataset)" in md
    assert pd.read_csv(folder / "gam_terms.csv")["edf"].tolist() == terms["edf"].tolist()
    assert "smoothing per term by GCV" in (folder / "gam_summary.txt").read_text()


def test_factor_terms_that_need_little_smoothing_leave_the_spline_smooth():
    """With a strong lr x family interaction the factor terms want little shrinkage. One λ
    shared by every term (pygam's default search, as before) then takes the spline on
    log(Dataset) to near interpolation of the 6 sizes; chosen per term it stays smooth."""
    from pygam import LinearGAM

    data = model_frame(synthetic.with_lr_slope_per_family(synthetic.metrics_table(seed=0), 0.1)).data
    fit = fit_gam(data)
    terms = term_table(fit).set_index("term")
    assert terms.at["s(log(Dataset))", "edf"] < 4.5
    interaction = terms.loc["te(lr, ls, Family)"]
    assert interaction["edf"] > 5 and interaction["lam"] < terms.at["s(log(Dataset))", "lam"]
    shared = LinearGAM(fit.gam.terms).gridsearch(*gam_design(data)[:1], data["DICE"].to_numpy(), progress=False)
    assert shared.statistics_["edof_per_coef"][shared.terms.get_coef_indices(0)].sum() > 5


# ------------------------------------------------------------------------------ degenerate grids


def test_single_level_terms_are_dropped_with_a_note():
    metrics = synthetic.metrics_table(seed=3, **DEMO_GRID)
    result = analyse(metrics)
    ols = result["ols"]
    assert ols.formula == "DICE ~ ls + ls:Family + log(Dataset)"
    assert any("`log(lr):ls:Family` dropped" in n and "lr (0.001)" in n for n in ols.notes)
    assert any("`log(reg)` dropped" in n for n in ols.notes)
    assert list(result["anova"]["term"]) == ["ls", "ls:Family", "log(Dataset)", "Residuals"]
    assert result["glm"].formula == "log(DICE) ~ ls + ls:Family + Dataset"
    assert ("lr",) not in result["gam"].terms and ("lr", "ls", "Family") not in result["gam"].terms
    assert len(result["groups"]) == 12 and len(result["pairs"]) == 66
    assert result["which"]["extrapolated"].any()  # 3000 lies outside 200..400


def test_a_model_that_never_segments_leaves_the_glm_blank_not_a_crash(tmp_path):
    """Runs that all score DICE 0 (a model that never learnt, as in a short demo): the
    log-link GLM has no maximum, so it is reported as not fitted; the rest stands."""
    metrics = synthetic.metrics_table(seed=5, **{**DEMO_GRID, "sizes": (100, 200)})
    # test DICE of a short demo run on the phantom: B5 and V16 never segmented
    observed = {
        "efficientnetb0": [0.186, 0.0, 0.0, 0.0],
        "efficientnetb5": [0.0, 0.0, 0.0, 0.0],
        "resnet18": [0.033, 0.042, 0.0, 0.105],
        "resnet50": [0.0005, 0.047, 0.0, 0.0],
        "vgg16": [0.0, 0.0, 0.0, 0.0],
        "vgg19": [0.030, 0.0, 0.087, 0.020],
    }
    metrics = metrics.sort_values(["backbone", "size", "fold"])
    metrics["test_dice"] = np.concatenate([observed[b] for b in sorted(observed)])
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    outputs = synthetic.rule_outputs("stats", tmp_path / "out")
    written = write_analysis(tmp_path / "metrics.csv", outputs)
    assert sorted(written) == sorted(outputs.values()) and all(p.is_file() for p in written)
    aic = pd.read_csv(tmp_path / "out" / "aic.csv")
    assert np.isfinite(aic.loc[aic.model == "OLS", "aic"]).all() and aic.loc[aic.model == "GLM", "aic"].isna().all()
    assert pd.read_csv(tmp_path / "out" / "glm.csv").empty
    notes = (tmp_path / "out" / "notes.md").read_text()
    assert "The GLM was not fitted: every run of long EfficientNet, short VGG has DICE = 0" in notes
    table1 = (tmp_path / "out" / "table1_ols.md").read_text()
    assert "GLM `log(DICE) ~ ls + ls:Family + Dataset`: not fitted, every run of long EfficientNet" in table1
    assert "nan" not in table1


def test_test_config_grid_gives_every_file(tmp_path):
    metrics_csv, _ = synthetic.write_tables(tmp_path / "in", seed=4, **synthetic.TEST_GRID)
    outputs = synthetic.rule_outputs("stats", tmp_path / "out")
    written = write_analysis(metrics_csv, outputs)
    assert sorted(written) == sorted(outputs.values()) and all(p.is_file() for p in written)
    # two short encoders of two families: ls is constant, the Family contrast is kept
    assert "DICE ~ Family" in (tmp_path / "out" / "table1_ols.md").read_text()
    notes = (tmp_path / "out" / "notes.md").read_text()
    assert "`log(Dataset)` dropped: the grid has a single value of Dataset (40)" in notes
    assert "Term `ls:Family` reduced to `Family`: the grid has a single level of ls (short)" in notes
    assert list(pd.read_csv(tmp_path / "out" / "table2_anova.csv")["term"]) == ["Family", "Residuals"]


@pytest.mark.parametrize(
    "backbones, formula, reduced",
    [
        (
            ("resnet18", "resnet50"),
            "DICE ~ ls + log(Dataset) + log(lr):ls + log(reg)",
            [
                "Term `ls:Family` dropped: with a single level of Family (ResNet) it is `ls`, already in the formula.",
                "Term `log(lr):ls:Family` reduced to `log(lr):ls`",
            ],
        ),
        (
            ("resnet18", "efficientnetb0"),
            "DICE ~ Family + log(Dataset) + log(lr):Family + log(reg)",
            [
                "Term `ls` dropped: the grid has a single level of ls (short).",
                "Term `ls:Family` reduced to `Family`",
                "Term `log(lr):ls:Family` reduced to `log(lr):Family`",
            ],
        ),
    ],
)
def test_a_single_level_factor_leaves_the_terms_that_vary(backbones, formula, reduced):
    """One family, or one depth: the factor drops out of the interactions, the lr slopes and
    the contrast of what varies stay (the same fit as the reduced formula written by hand)."""
    data = model_frame(synthetic.metrics_table(seed=3, backbones=backbones, sizes=(200, 1000), folds=3)).data
    ols = fit_ols(data)
    assert ols.formula == formula
    for note in reduced:
        assert any(n.startswith(note) for n in ols.notes), note
    assert ols.results.rsquared == pytest.approx(fit_ols(data, formula).results.rsquared, rel=1e-12)
    assert ols.results.rsquared > fit_ols(data, "DICE ~ log(Dataset) + log(reg)").results.rsquared + 0.01
    glm = fit_glm(data)
    assert "lr:" in glm.formula and glm.results is not None


# ------------------------------------------------------------------------------ files and formats


def test_written_files_and_formats(full):
    folder, result = full[3], full[2]
    assert sorted(folder.iterdir()) == sorted(synthetic.rule_outputs("stats", folder).values())
    coef = pd.read_csv(folder / "table1_ols.csv")
    assert (coef["estimate"].to_numpy() == result["coef"]["estimate"].to_numpy()).all()  # full precision
    assert len(pd.read_csv(folder / "hsd.csv")) == 630
    md = (folder / "table1_ols.md").read_text()
    assert "| ls[T.short] |" in md and "AIC = " in md and "R's AIC()" in md
    tex = (folder / "table1_ols.tex").read_text()
    assert r"\toprule" in tex and r"log(lr):ls[long]:Family[EfficientNet]" in tex and "²" not in tex
    anova_tex = (folder / "table2_anova.tex").read_text()
    assert (
        r"$\eta^2_p$" in anova_tex
        and r"$\eta^2$" in anova_tex
        and "Residuals" in anova_tex
        and "Type 2 ANOVA" in anova_tex
    )
    which = (folder / "which_model.md").read_text()
    assert which.startswith("# Which model for my data size?")
    assert "| 3000 | OLS | " in which
    assert "<table>" in (folder / "which_model.html").read_text()


def test_the_library_writes_to_the_rules_named_outputs_and_refuses_others(full, tmp_path):
    """The rule names every output; the library writes each to the path it is given, and
    refuses an output it does not know or one it is not given (writing nothing)."""
    refused = synthetic.rule_outputs("stats", tmp_path / "refused")
    del refused["table2_tex"]
    with pytest.raises(UnetcapError, match=r"rule stats: no path for table2_tex; unknown output\(s\) extra"):
        write_results(full[2], {**refused, "extra": tmp_path / "refused" / "extra.csv"})
    assert not (tmp_path / "refused").exists()
    outputs = {**synthetic.rule_outputs("stats", tmp_path / "a"), "table1_md": tmp_path / "elsewhere" / "t1.md"}
    written = write_results(full[2], outputs)
    assert (tmp_path / "elsewhere" / "t1.md").read_text() == (full[3] / "table1_ols.md").read_text()
    assert sorted(written) == sorted(outputs.values()) and all(p.is_file() for p in written)


def test_validation_dice_by_config():
    metrics = synthetic.metrics_table(seed=5, **DEMO_GRID)
    frame = model_frame(metrics, "val_dice")
    keys = ["backbone", "size", "lr", "reg", "fold"]
    both = frame.data.merge(metrics, on=keys, validate="one_to_one")
    assert len(both) == len(metrics) and (both["DICE"] == both["val_dice"]).all()
    assert frame.notes[0].startswith("Response: val_dice")


def test_a_formula_from_the_config():
    metrics = synthetic.metrics_table(seed=6, **DEMO_GRID)
    fit = fit_ols(model_frame(metrics).data, "DICE ~ Family + log(Dataset) + log(lr)")
    assert list(fit.results.params.index) == ["Intercept", "Family[T.ResNet]", "Family[T.VGG]", "log(Dataset)"]
    assert fit.notes == [
        "Term `log(lr)` dropped: the grid has a single value of lr (0.001), so its effect is not identified."
    ]


def test_bad_tables_and_settings_are_refused(tmp_path):
    metrics = synthetic.metrics_table(seed=7, **synthetic.TEST_GRID)
    path = tmp_path / "metrics.csv"
    metrics.drop(columns=["test_dice", "depth"]).to_csv(path, index=False)
    with pytest.raises(UnetcapError, match=r"metrics.csv: missing column\(s\) depth, test_dice"):
        read_metrics(path)
    with pytest.raises(UnetcapError, match="is missing"):
        read_metrics(tmp_path / "none.csv")
    with pytest.raises(UnetcapError, match="analysis.metric"):
        model_frame(metrics, "dice")
    with pytest.raises(UnetcapError, match="one '~'"):
        split_formula("DICE + ls")
    nan = metrics.assign(test_dice=np.nan)
    with pytest.raises(UnetcapError, match="at least 2 runs"):
        model_frame(nan)
    some = metrics.copy()
    some.loc[0, "test_dice"] = np.nan
    assert "1 run(s) without a finite test_dice left out." in model_frame(some).notes
    data = model_frame(synthetic.metrics_table(seed=8, sizes=(200, 1000), regs=(0.0, 1e-4), folds=2)).data
    with pytest.raises(UnetcapError, match=r"analysis.ols_formula .*a log\(\) needs values > 0"):
        fit_ols(data)
    with pytest.raises(UnetcapError, match="analysis.ols_formula 'DICE ~ Familiy'.*Familiy"):
        fit_ols(data, "DICE ~ Familiy")
    with pytest.raises(UnetcapError, match="analysis.glm_formula"):
        fit_glm(data, "log(dice) ~ ls")


def test_every_table_states_the_runs_it_used_and_left_out(tmp_path):
    metrics = synthetic.metrics_table(seed=9, sizes=(200, 1000), lrs=(0.01, 0.001), folds=2, diverge=0.3)
    metrics.loc[[0, 5, 7], "test_dice"] = np.nan
    kept = metrics.drop(index=[0, 5, 7])
    diverged = int((kept["status"] != "ok").sum())
    idle = int((kept["val_dice"] < LEARNED_FLOOR).sum())
    assert diverged > 0 and idle > 0
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    write_analysis(tmp_path / "metrics.csv", synthetic.rule_outputs("stats", tmp_path / "out"))
    line = (
        f"Runs: {len(metrics) - 3} of the {len(metrics)} in the metrics table used, 3 left out "
        f"(no finite test_dice); {diverged} diverged run(s) kept with their test_dice; "
        f"{idle} run(s) did not learn (validation DICE below {LEARNED_FLOOR:g}), kept."
    )
    for name in (
        "table1_ols.md",
        "table1_ols.html",
        "table2_anova.md",
        "aic.md",
        "glm.md",
        "hsd.html",
        "which_model.md",
        "gam_summary.txt",
    ):
        assert line in (tmp_path / "out" / name).read_text(), name
    assert line.replace("_", r"\_") in (tmp_path / "out" / "table2_anova.tex").read_text()


def test_short_minus_long_per_family_and_trained_lr(full):
    """ls[T.short] is the EfficientNet difference at lr = 1; the contrasts give it at each
    trained lr, from the coefficients, with the t interval of c' beta."""
    result, folder = full[2], full[3]
    b, cov = result["ols"].results.params, result["ols"].results.cov_params()
    depth = result["depth"]
    assert len(depth) == 9 and set(depth["Family"]) == {"EfficientNet", "ResNet", "VGG"}
    assert sorted(depth["lr"].unique()) == [0.0001, 0.001, 0.01]
    df = result["ols"].results.df_resid
    for r in depth.itertuples():
        c = pd.Series(0.0, index=b.index)
        c["ls[T.short]"] = 1
        if r.Family != "EfficientNet":
            c[f"ls[short]:Family[T.{r.Family}]"], c[f"ls[long]:Family[T.{r.Family}]"] = 1, -1
        c[f"log(lr):ls[short]:Family[{r.Family}]"] = np.log(r.lr)
        c[f"log(lr):ls[long]:Family[{r.Family}]"] = -np.log(r.lr)
        assert r.difference == pytest.approx(c @ b, rel=1e-9, abs=1e-12)
        assert r.std_error == pytest.approx(np.sqrt(c @ cov @ c), rel=1e-9)
        q = st.t.ppf(0.975, df)
        assert (r.ci_low, r.ci_high) == pytest.approx((c @ b - q * r.std_error, c @ b + q * r.std_error), rel=1e-9)
        assert r.p == pytest.approx(2 * st.t.sf(abs(c @ b) / r.std_error, df), rel=1e-8)
    md = (folder / "table1_ols.md").read_text()
    assert DEPTH_NOTE in md and "Short minus long encoder, per family and trained lr" in md
    assert len(pd.read_csv(folder / "table1_depth.csv")) == 9


def test_the_paper_beside_the_study(full, tmp_path):
    result, folder = full[2], full[3]
    paper = result["paper"]
    coef = paper[paper["table"] == 1].set_index("term")
    assert list(coef.index) == PAPER_TERMS
    study = result["coef"].set_index("term")["estimate"]
    assert (coef["study"] == study[coef.index]).all()
    assert (coef["same_sign"] == (np.sign(coef["paper"]) == np.sign(study[coef.index]))).all()
    eta = paper[(paper["table"] == 2) & (paper["quantity"] == "η²")].set_index("term")
    assert eta.at["log(Dataset)", "paper"] == 0.7693 and eta.at["log(Dataset)", "rank_paper"] == 1
    anova = result["anova"].set_index("term")
    assert eta.at["log(Dataset)", "study"] == anova.at["log(Dataset)", "eta_sq"]
    assert sorted(eta["rank_study"].dropna()) == [1, 2, 3, 4, 5]
    assert eta["rank_study"].dropna().idxmin() == anova.drop("Residuals")["eta_sq"].idxmax()
    md = (folder / "paper.md").read_text()
    assert "| Table 2 | log(Dataset) | η² | 0.7693 |" in md and "| Residuals | F |" not in md
    assert f"Same sign as the paper: {int(coef['same_sign'].sum())} of 14 coefficients." in md
    # another grid, other terms: nothing to compare, said so
    metrics_csv, _ = synthetic.write_tables(tmp_path / "in", seed=4, **synthetic.TEST_GRID)
    write_analysis(metrics_csv, synthetic.rule_outputs("stats", tmp_path / "out"))
    assert pd.read_csv(tmp_path / "out" / "paper.csv").empty
    assert "Not comparable" in (tmp_path / "out" / "paper.md").read_text()


def test_p_values_are_printed_as_the_paper_prints_them(full):
    assert [fmt_p(p) for p in (0.5, 0.0123, 9.9e-4, 3.4e-7, 2e-300, 0.0, np.nan)] == [
        "0.500",
        "0.012",
        "9.9e-04",
        "3.4e-07",
        "< 1e-22",
        "< 1e-22",
        "",
    ]
    coef, md = full[2]["coef"].set_index("term"), (full[3] / "table1_ols.md").read_text()
    assert coef.at["log(Dataset)", "p"] < 1e-22 and "| log(Dataset) |" in md
    row = next(line for line in md.splitlines() if line.startswith("| log(Dataset) |"))
    assert "< 1e-22" in row


def test_the_figures_and_the_sample_size_curves_read_the_table_without_statsmodels():
    """unetcap.analysis.table is what the figures and the curves share with the statistics:
    importing them loads neither statsmodels nor pygam (the backtest imports the OLS when it
    runs)."""
    import subprocess
    import sys

    code = (
        "import sys, unetcap.figures, unetcap.analysis.sample_size_text, unetcap.analysis.table; "
        "print(sorted(m for m in ('statsmodels', 'pygam', 'patsy') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_backend_is_a_factor_when_the_table_holds_both_and_dropped_when_it_holds_one():
    """A table of runs from both training backends (config train.backend): `Backend` in a
    formula estimates the shift between them; with one backend the term is dropped with a
    note, and a table made before the setting (no train_backend column) is TensorFlow's."""
    metrics = synthetic.metrics_table(seed=4, **DEMO_GRID)
    assert "train_backend" not in metrics.columns
    assert set(model_frame(metrics).data["Backend"]) == {"tensorflow"}
    shifted = metrics.assign(test_dice=metrics["test_dice"] + 0.05, train_backend="pytorch")
    both = pd.concat([metrics.assign(train_backend="tensorflow"), shifted], ignore_index=True)
    fit = fit_ols(model_frame(both).data, PAPER_OLS + " + Backend")
    coef = coefficient_table(fit).set_index("term")
    assert coef.loc["Backend[T.pytorch]", "estimate"] == pytest.approx(0.05, abs=1e-9)
    one = fit_ols(model_frame(metrics).data, PAPER_OLS + " + Backend")
    assert "Backend" not in one.formula and any("`Backend` dropped" in n for n in one.notes)
