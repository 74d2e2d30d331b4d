"""How many images do I need? (unetcap.analysis.curves, resample, backtest, sample_size):
each curve family recovers its own curves and selection survives misspecification, the
bootstrap resamples patients and training sets, the bands' coverage on simulated studies
with real noise structure, degenerate studies answered in words, a real learning curve,
stable files, and the rule in the workflow."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic
import yaml
from helpers import digests
from simulated_study import TRUTH, population_dice, simulated_study

from unetcap import UnetcapError
from unetcap.analysis import backtest as bt
from unetcap.analysis import curves
from unetcap.analysis import resample as rs
from unetcap.analysis import sample_size as ss
from unetcap.analysis.run import write_analysis
from unetcap.analysis.sample_size_text import plan_lines, render_sample_size, write_sample_size

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real_curves"
SIZES = (75, 150, 300, 600, 1200)


def family_curve(name: str, sizes, shift: float = 0.0) -> np.ndarray:
    """A curve of each family (and a logistic in log N, which is none of them)."""
    n = np.asarray(sizes, dtype=float)
    return (
        shift
        + {
            "ipl": 0.92 - 0.9 * n**-0.45,
            "loglinear": 0.30 + 0.06 * np.log(n),
            "exp_plateau": 0.88 - 0.40 * np.exp(-n / 400),
            "logistic": 0.9 / (1 + np.exp(-(np.log(n) - np.log(60)) / 1.1)),
        }[name]
    )


def table_of(values: dict, folds: int = 3, sizes=SIZES, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A merged metrics table whose holdout DICE per backbone and size is `values[backbone]`
    (one value per size) plus gaussian noise per run."""
    rng = np.random.default_rng(seed)
    rows = []
    for backbone, curve in values.items():
        for size, dice in zip(sizes, curve):
            for fold in range(folds):
                value = float(dice + rng.normal(0, noise))
                rows.append(
                    {
                        "size": size,
                        "backbone": backbone,
                        "family": "ResNet" if backbone.startswith("resnet") else "VGG",
                        "depth": "short",
                        "lr": 0.001,
                        "reg": 1e-06,
                        "fold": fold,
                        "status": "ok",
                        "val_dice": value,
                        "test_dice": value,
                        "holdout_dice": value,
                    }
                )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the families
@pytest.mark.parametrize("name", ["ipl", "loglinear", "exp_plateau"])
def test_each_family_recovers_a_curve_of_its_own_form(name):
    sizes = np.array(SIZES, dtype=float)
    grid = np.geomspace(75, 4800, 50)
    means = family_curve(name, sizes)[None, None, :]
    fit = curves.fit_family(curves.FAMILIES[name], sizes, means, np.ones((1, len(sizes))))
    assert fit.on_bound[0, 0] == ""
    assert np.max(np.abs(fit.predict(grid)[0, 0] - family_curve(name, grid))) < 2e-3  # extrapolated to 4x too


def test_a_fit_on_a_bound_says_so():
    """A straight line in log N has no plateau below 1 that fits: the power law's plateau
    ends on its bound, and a flat curve's slope on 0."""
    sizes = np.array(SIZES, dtype=float)
    rising = curves.fit_family(curves.FAMILIES["ipl"], sizes, family_curve("loglinear", sizes)[None, None], [1] * 5)
    assert rising.on_bound[0, 0].startswith("a=1") and rising.a[0, 0] == 1.0
    flat = curves.fit_family(curves.FAMILIES["exp_plateau"], sizes, np.full((1, 1, 5), 0.6), [1] * 5)
    assert flat.on_bound[0, 0].startswith("b=0")
    assert curves.bound_text("a=1") == "plateau at its bound 1: not identified"


def test_a_shared_exponent_is_one_c_for_every_model_with_its_own_offsets():
    sizes = np.array(SIZES, dtype=float)
    means = np.stack([0.90 - 0.9 * sizes**-0.45, 0.80 - 0.5 * sizes**-0.45])[None]
    fit = curves.fit_family(curves.FAMILIES["ipl_shared"], sizes, means, np.ones((2, 5)))
    assert fit.theta[0, 0] == fit.theta[0, 1] == pytest.approx(0.45, rel=0.03)
    assert fit.a[0] == pytest.approx([0.90, 0.80], abs=0.01)


@pytest.mark.parametrize("generating", ["ipl", "loglinear", "exp_plateau", "logistic"])
def test_selection_picks_the_generating_family_or_one_no_worse_by_backtest(generating):
    """Two models whose curves come from one family (or from a logistic in log N, which is
    none of them), with run noise: the family chosen is the generating one or one whose
    leave-largest-out error is no larger; and it beats carrying the last value forward."""
    table = table_of(
        {"resnet18": family_curve(generating, SIZES), "vgg16": family_curve(generating, SIZES, -0.05)},
        noise=0.003,
        seed=3,
    )
    result = ss.analyse_sample_size(table, metric="holdout_dice", resamples=60, seed=1)
    families = result["families"].set_index("method")
    chosen = result["chosen"]
    assert families.at[chosen, "chosen"]
    if generating in curves.FAMILIES:
        assert chosen == generating or families.at[chosen, "mae_largest"] <= families.at[generating, "mae_largest"]
        assert families.at[generating, "mae_largest"] < 0.02  # its own family predicts it
    assert families.at[chosen, "mae_largest"] < families.at["carry_forward", "mae_largest"]
    assert families.at[chosen, "mae_largest"] <= families["mae_largest"].min() + 1e-12


# ---------------------------------------------------------------- resampling
def test_a_run_dice_from_patient_counts_and_one_draw_of_patients_for_every_run():
    counts = np.array([[[30, 80], [50, 120]], [[10, 100], [60, 100]]], dtype=float)  # 2 runs x 2 patients
    assert rs.dice_of(counts) == pytest.approx([2 * 80 / 200, 2 * 70 / 200])
    # patient 0 drawn twice, patient 1 not at all
    assert rs.dice_of(counts, np.array([[2.0, 0.0]]))[0] == pytest.approx([2 * 30 / 80, 2 * 10 / 100])
    # two models scored identically: every replicate moves them together (shared patients and folds)
    m, h = simulated_study(seed=4, backbones=("resnet18",))
    twin = m.assign(backbone="vgg16", family="VGG")
    holdout = pd.concat([h, h.assign(backbone="vgg16", family="VGG")], ignore_index=True)
    runs = pd.concat([m, twin], ignore_index=True).rename(columns={"holdout_dice": "DICE"})
    units = rs.make_units(runs[["backbone", "size", "fold", "DICE"]], rs.holdout_counts(runs, holdout))
    means = rs.replicate_means(units, 50, seed=1)
    assert units.backbones == ["resnet18", "vgg16"]
    np.testing.assert_allclose(means[:, 0], means[:, 1])
    assert means[1:, 0, 0].std() > 0  # and they do move
    np.testing.assert_allclose(means[0, 0], m.groupby("size")["holdout_dice"].mean().to_numpy())
    # training sets per size: the folds of every repeat
    assert list(units.units_per_size()) == [9, 9, 6, 3, 3]


def test_holdout_counts_must_cover_every_run():
    m, h = simulated_study(seed=5, backbones=("resnet18",))
    with pytest.raises(UnetcapError, match="1 run"):
        rs.holdout_counts(m, h[~((h["size"] == 75) & (h["fold"] == 0))], "holdout.csv")


def test_widening_and_coverage_by_hand():
    table = pd.DataFrame(
        {
            "ipl_predicted": [0.50, 0.50, 0.50],
            "ipl_low": [0.40, 0.45, 0.40],
            "ipl_high": [0.60, 0.55, 0.70],
            "ipl_error": [0.05, -0.10, 0.0],  # inside, twice the half-width above, on the centre
        }
    )
    z = bt.z_scores(table, "ipl")
    assert z == pytest.approx([0.5, 2.0, 0.0])
    from scipy.stats import t

    assert bt.widening(z) == pytest.approx(t.ppf(0.975, 3) * np.sqrt((0.25 + 4) / 3))
    assert bt.widening(np.array([0.1, 0.1, 0.1])) == 1.0  # never narrower than the bootstrap's


# ---------------------------------------------------------------- the answer
def test_the_analysis_uses_the_holdout_pool_not_the_subset_test_set(tmp_path):
    """A table whose subset test sets say nothing (test DICE constant 0.3) and whose holdout
    DICE rises: the curves follow the holdout pool, and a table without it is refused, not
    quietly analysed on the test sets."""
    m, h = simulated_study(seed=6)
    m = m.assign(test_dice=0.3)
    result = ss.analyse_sample_size(m, h, resamples=50, seed=1)
    assert result["metric"] == "holdout_dice" and not result["reason"] and not result["model_reasons"]
    observed = result["backtest"].groupby("size")["observed"].mean()
    assert observed.is_monotonic_increasing and observed.iloc[-1] > 0.6
    assert "holdout patients" in " ".join(result["notes"])
    with pytest.raises(UnetcapError, match="no holdout_dice column .* test_dice"):
        ss.analyse_sample_size(m.drop(columns="holdout_dice"), None, resamples=10)
    m.to_csv(tmp_path / "metrics.csv", index=False)
    h.to_csv(tmp_path / "holdout.csv", index=False)
    outputs = synthetic.rule_outputs("sample_size", tmp_path / "out")
    write_sample_size(tmp_path / "metrics.csv", outputs, tmp_path / "holdout.csv", resamples=50, seed=1)
    assert "12 patients" in (tmp_path / "out" / "sample_size.md").read_text()


def test_coverage_on_simulated_studies_with_fold_and_patient_effects():
    """Studies drawn from a logistic curve in log N (no family's form) with patient,
    training-set and run effects, and subset test sets that shrink with the size: the
    widened bands cover the backtests' held-out means, and the true mean DICE at twice the
    largest trained size, in most studies."""
    truth = {b: population_dice(b, 2400) for b in TRUTH}
    loo, inside, chosen, errors = [], [], [], []
    for sim in range(16):
        m, h = simulated_study(seed=200 + sim)
        result = ss.analyse_sample_size(m, h, resamples=150, seed=sim)
        families = result["families"].set_index("method")
        chosen.append(result["chosen"])
        errors.append(families["mae_largest"])
        z = bt.z_scores(result["backtest"], result["chosen"])
        loo += [z[i] <= bt.widening(np.delete(z, i)) for i in range(len(z))]
        _, low, high = ss.answer_band(result)
        at = np.argmin(np.abs(result["grid"] - 2400))
        inside += [low[i, at] <= truth[b] <= high[i, at] for i, b in enumerate(result["fitted"].backbones)]
    mae = pd.concat(errors, axis=1).mean(axis=1)
    print(
        f"16 simulated studies: backtest cases inside the widened band (each left out of its k) "
        f"{np.mean(loo):.0%} of {len(loo)}; true DICE at 2x the largest size inside the band {np.mean(inside):.0%} "
        f"of {len(inside)}; chosen {pd.Series(chosen).value_counts().to_dict()}; mean abs. error "
        + ", ".join(f"{k} {v:.3f}" for k, v in mae.items())
    )
    assert np.mean(loo) >= 0.9
    assert np.mean(inside) >= 0.75
    assert mae[chosen].mean() <= mae["ols"] and mae[chosen].mean() <= mae["carry_forward"]


def test_without_resamples_the_answer_is_a_point_and_says_it_has_no_interval():
    m, h = simulated_study(seed=7)
    result = ss.analyse_sample_size(m, h, resamples=0, seed=1)
    images = ss.images_table(result)
    answered = images[images["status"].isin(["trained range", "extrapolated"])]
    assert len(answered) and answered["images"].notna().all() and answered["images_low"].isna().all()
    assert not answered["open"].any() and answered["plateau_low"].isna().all()
    assert "(no interval: resamples 0)" in plan_lines(images)[0]
    assert result["families"]["coverage_nominal"].isna().all() and result["widening"] == 1.0


def degenerate(kind: str) -> pd.DataFrame:
    if kind == "two sizes":
        return table_of({"resnet18": [0.5, 0.6]}, sizes=(100, 400))
    if kind == "flat":
        return table_of({"resnet18": [0.6] * 5, "vgg16": family_curve("ipl", SIZES)}, noise=0.02, seed=2)
    if kind == "falling":
        return table_of({"resnet18": [0.7, 0.66, 0.62, 0.6, 0.55]}, noise=0.005)
    return table_of({"resnet18": family_curve("ipl", SIZES)}, folds=1)


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("two sizes", "only 2 trained dataset sizes (100, 400): a curve is fitted on 3 and checked"),
        ("flat", "DICE does not rise clearly with size"),
        ("falling", "DICE falls with size"),
        ("one fold", "one training set (fold) per size"),
    ],
)
def test_degenerate_studies_give_a_reason_never_a_number(kind, reason, tmp_path):
    result = ss.analyse_sample_size(degenerate(kind), resamples=40, seed=1)
    images = ss.images_table(result)
    r18 = images[images["backbone"] == "resnet18"]
    assert (r18["status"] == "not answered").all() and r18["images"].isna().all()
    assert r18["reason"].str.contains(reason, regex=False).all()
    text = render_sample_size(result)
    line = next(line for line in plan_lines(images) if reason in line)
    assert not any(ch.isdigit() for ch in line.split(reason)[0].replace("R18", ""))
    assert reason in text["table_md"] and "inf" not in text["table_csv"] and "∞" not in text["table_md"]
    for name, csv in text.items():  # every table keeps its header when it has no row (a reader can open it)
        if not name.startswith("table_") or name == "table_csv":
            assert pd.read_csv(io.StringIO(csv)).columns.size > 3, name
    if kind == "flat":  # the other model still gets its answer, from curves fitted without the flat one
        assert (images[images["backbone"] == "vgg16"]["status"] != "not answered").all()
        assert set(ss.fits_table(result)["model"]) == {"V16"} and set(result["backtest"]["model"]) == {"V16"}


def test_a_real_slow_rising_curve_is_answered_in_words_with_no_bound_printed_as_a_number():
    """resnet18 on real cine MRI (tests/data/real_curves: 5 sizes, 3 folds, each subset's own
    test set): still rising at 640 images, its power law's plateau ends on the bound 1. No
    plateau printed as a number where it is a bound, no infinity, every family beside the
    two baselines."""
    metrics = pd.read_csv(REAL / "cine_mri_resnet18_metrics.csv")
    result = ss.analyse_sample_size(metrics, None, metric="test_dice", resamples=200, seed=1)
    text = render_sample_size(result)
    families = result["families"].set_index("method")
    assert set(families.index) == {*curves.FAMILIES, "ols", "carry_forward"}
    fits = ss.fits_table(result).set_index("family")
    assert fits.at["ipl", "on_bound"].startswith("plateau at its bound 1")
    row = next(line for line in text["table_md"].splitlines() if line.startswith("| ipl | R18 |"))
    assert "bound (plateau at its bound 1: not identified)" in row and "| 1 |" not in row
    for name in ("table_md", "table_csv", "table_html"):
        assert "inf" not in text[name].replace("information", "") and "∞" not in text[name]
    answer = plan_lines(ss.images_table(result))[0]
    assert answer.startswith("R18 (this study trained up to 640 images; curve: ")
    assert "DICE 0.70: " in answer and "the most these data support" in answer


def test_crossings_of_the_chosen_curves():
    sizes = np.array(SIZES, dtype=float)
    table = table_of({"resnet18": 0.9 - 2.0 * sizes**-0.5, "vgg16": 0.8 - 0.5 * sizes**-0.5}, noise=0.001)
    result = ss.analyse_sample_size(table, resamples=30, seed=1)
    crossings = ss.crossings_table(ss.curves_table(result))
    assert len(crossings) == 1 and crossings["overtakes"].iloc[0] == "R18"
    # 0.9 - 2 / sqrt(N) = 0.8 - 0.5 / sqrt(N) at N = 225
    assert crossings["size"].iloc[0] == pytest.approx(225, rel=0.15)


def test_best_runs_are_chosen_on_validation_dice_per_model_and_size():
    table = synthetic.metrics_table(seed=8, sizes=(200, 1000, 5000), backbones=("resnet18",), regs=(0.0001,), folds=3)
    data = ss.select_runs(table, metric="test_dice", runs="best")
    assert len(data) == 3 * 3  # one lr per size, its three folds
    for size, block in data.groupby("size"):
        runs = table[table["size"] == size]
        assert block["lr"].iloc[0] == runs.groupby("lr")["val_dice"].mean().idxmax()
    with pytest.raises(UnetcapError, match="analysis.sample_size.runs"):
        ss.select_runs(table, metric="test_dice", runs="test")


def test_files_are_byte_identical_from_the_same_tables_and_which_model_leads_with_the_answer(tmp_path):
    m, h = simulated_study(seed=9)
    m.to_csv(tmp_path / "metrics.csv", index=False)
    h.to_csv(tmp_path / "holdout.csv", index=False)
    outputs = synthetic.rule_outputs("sample_size", tmp_path / "a")
    written = write_sample_size(tmp_path / "metrics.csv", outputs, tmp_path / "holdout.csv", resamples=60, seed=1)
    assert sorted(written) == sorted(outputs.values()) and all(p.is_file() for p in written)
    write_sample_size(
        tmp_path / "metrics.csv",
        synthetic.rule_outputs("sample_size", tmp_path / "b"),
        tmp_path / "holdout.csv",
        resamples=60,
        seed=1,
    )
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    md = (tmp_path / "a/sample_size.md").read_text()
    assert md.split("\n")[2].startswith("B0 (this study trained up to 1,200 images; curve: ")
    stats_outputs = synthetic.rule_outputs("stats", tmp_path / "stats")
    write_analysis(tmp_path / "metrics.csv", stats_outputs, sample_size_path=tmp_path / "a/sample_size.csv")
    which = (tmp_path / "stats/which_model.md").read_text()
    assert which.index("B0 (this study trained up to") < which.index("Which model for my data size? Best model")
    assert "R18 (this study trained up to" in (tmp_path / "stats/which_model.html").read_text()


def test_schema_defaults_validate_and_the_rule_is_in_the_workflow():
    """The workflow (Snakemake's validate) and the library (unetcap.schema) fill the same
    defaults from the one schema."""
    from snakemake.utils import validate

    from unetcap import schema

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["analysis"].pop("sample_size", None)
    validate(config, str(schema.SCHEMA_PATH), set_default=True)
    assert config["analysis"]["sample_size"] == schema.validated({}, "analysis", "sample_size")
    assert (
        config["analysis"]["sample_size"]["metric"] == "holdout_dice"
        and config["analysis"]["sample_size"]["runs"] == "all"
    )
    assert config["train"] == schema.validated(
        yaml.safe_load((ROOT / "config/config.yaml").read_text())["train"], "train"
    )
    rules = (ROOT / "workflow/rules/sample_size.smk").read_text()
    assert "rule sample_size:" in rules and "scripts/sample_size.py" in rules
    assert "holdout=holdout_table()" in rules
    assert "sample_size=rules.sample_size.output.table_csv" in (ROOT / "workflow/rules/stats.smk").read_text()
    assert "*rules.sample_size.output" in (ROOT / "workflow/rules/analysis.smk").read_text()
    assert (ROOT / "workflow/report/sample_size.rst").is_file()
