"""How many images do I need? (unetcap.sample_size): learning curves fitted to tables
generated from known curves, the bootstrap's coverage, unreachable targets, degenerate
grids, the backtest against the OLS, stable files, and the rule in the workflow."""

import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import synthetic
import yaml

from unetcap import sample_size as ss
from unetcap.analysis.run import write_analysis

ROOT = Path(__file__).resolve().parents[1]
SIZES = (200, 500, 1000, 2500, 5000, 10000)
# DICE(N) = a - b N^(-c): 0.60 at 200 images, plateau 0.90.
A, C = 0.90, 0.5
B = (A - 0.60) * 200**C


def known_curve_table(
    seed=0, a=A, b=B, c=C, sizes=SIZES, backbones=("resnet18",), runs=5, sd=0.03, folds=5
) -> pd.DataFrame:
    """A merged metrics table whose test DICE follows a known learning curve plus gaussian
    noise: `runs` runs per backbone and size (lr x reg x fold of synthetic's grid)."""
    lrs = (0.01, 0.001, 0.0001)[: max(1, runs // folds)]
    table = synthetic.metrics_table(
        seed, sizes=sizes, backbones=backbones, lrs=lrs, regs=(0.0001,), folds=folds, diverge=0.0
    )
    rng = np.random.default_rng(seed)
    table["status"] = "ok"
    table["test_dice"] = ss.curve(table["size"], a, b, c) + rng.normal(0, sd, len(table))
    table["val_dice"] = table["test_dice"] + rng.normal(0, 0.01, len(table))
    return table


def test_the_fit_recovers_the_curve_it_was_generated_from():
    table = known_curve_table(seed=1, runs=10, sd=0.01)
    data = ss.select_runs(table)
    fit = ss.fit_curve(data["DICE"], data["size"], "resnet18", resamples=0)
    assert fit.status == "fitted", fit.reason
    assert fit.a == pytest.approx(A, abs=0.02)
    assert fit.c == pytest.approx(C, rel=0.2)
    assert fit.b == pytest.approx(B, rel=0.5)  # b and c trade off; the curve itself is tight:
    grid = np.geomspace(200, 10000, 20)
    assert np.max(np.abs(ss.curve(grid, fit.a, fit.b, fit.c) - ss.curve(grid, A, B, C))) < 0.01
    assert ss.images_needed(0.85, fit.a, fit.b, fit.c) == pytest.approx(ss.images_needed(0.85, A, B, C), rel=0.2)


def test_the_interval_of_the_images_needed_covers_the_true_value():
    """100 seeded simulations (5 runs per size, as the best lr x reg of 5 folds), 200
    resamples each: the 95 % interval of N* for DICE 0.85 covers the true 7,200 images in
    at least 90 of them."""
    target = 0.85
    true = ss.images_needed(target, A, B, C)
    sizes = np.repeat(SIZES, 5)
    covered, started = 0, time.perf_counter()
    for sim in range(100):
        rng = np.random.default_rng(1000 + sim)
        dice = ss.curve(sizes, A, B, C) + rng.normal(0, 0.03, len(sizes))
        fit = ss.fit_curve(dice, sizes, "resnet18", resamples=200, seed=sim)
        assert fit.status == "fitted", fit.reason
        _, low, high = ss._quantiles([ss.images_needed(target, *theta) for theta in fit.draws])
        covered += low <= true <= high
    print(
        f"coverage of the 95 % interval of N*: {covered} % of 100 simulations ({time.perf_counter() - started:.1f} s)"
    )
    assert covered >= 90


def test_answers_for_every_model_and_target_with_unreachable_and_extrapolated_flagged():
    table = pd.concat(
        [
            known_curve_table(seed=2, backbones=("resnet18",)),
            known_curve_table(seed=3, a=0.80, b=(0.80 - 0.65) * 200**0.8, c=0.8, sd=0.02, backbones=("vgg16",)),
        ],
        ignore_index=True,
    )
    result = ss.analyse_sample_size(table, targets=(0.70, 0.85, 0.95), resamples=200, seed=5)
    images = result["images"].set_index(["model", "target"])
    assert list(result["images"]["model"].unique()) == ["R18", "V16"]  # the paper's order
    assert images.at[("R18", 0.70), "status"] == "trained range"
    assert (
        images.at[("R18", 0.85), "images_low"]
        <= ss.images_needed(0.85, A, B, C)
        <= images.at[("R18", 0.85), "images_high"]
    )
    # V16's plateau is 0.80: 0.85 and 0.95 lie above it, 0.95 far above its interval
    assert images.at[("V16", 0.95), "status"] == "not reachable"
    assert images.at[("R18", 0.95), "status"] in ("not reachable", "above the fitted plateau")
    assert np.isinf(images.at[("V16", 0.95), "images"])
    assert images.at[("V16", 0.85), "status"] in ("not reachable", "above the fitted plateau")
    plan = ss.plan_lines(result["images"])
    # the first to reach a target comes first: V16 starts higher
    assert plan[0].startswith("To reach DICE 0.70: V16 about") and "; R18 about" in plan[0]
    assert "V16 not reachable (plateau 0." in plan[2]
    # the curves cross: V16 leads at small sizes, R18 overtakes it
    crossings = result["crossings"]
    assert len(crossings) == 1 and crossings["overtakes"].iloc[0] == "R18"
    assert bool(crossings["inside_trained_range"].iloc[0])


def test_beyond_the_data_when_the_answer_is_far_above_the_largest_size():
    # plateau 0.95, slow curve: DICE 0.90 needs about 1.5 million images
    table = known_curve_table(seed=4, a=0.95, b=(0.95 - 0.6) * 200**0.3, c=0.3, sd=0.005)
    result = ss.analyse_sample_size(table, targets=(0.90,), resamples=50)
    row = result["images"].iloc[0]
    assert row["status"] == "beyond the data" and row["images"] > 4 * 10000
    assert "beyond the data" in ss.plan_lines(result["images"])[0]


@pytest.mark.parametrize(
    "sizes,dice,message",
    [
        ((200,), None, "only 1 trained dataset size (200); the curve's 3 parameters need at least 3"),
        ((200, 1000), None, "only 2 trained dataset sizes (200, 1,000)"),
        ((200, 500, 1000), 0.0, "DICE is the same (0) in every run"),
    ],
    ids=["one size", "two sizes", "DICE all 0"],
)
def test_degenerate_tables_say_why_no_curve_was_fitted(sizes, dice, message, tmp_path):
    table = known_curve_table(seed=5, sizes=sizes, backbones=("resnet18", "vgg16"))
    if dice is not None:
        table["test_dice"] = dice
    table.to_csv(tmp_path / "metrics.csv", index=False)
    outputs = synthetic.rule_outputs("sample_size", tmp_path / "out")
    ss.write_sample_size(tmp_path / "metrics.csv", outputs, resamples=20)
    images = pd.read_csv(tmp_path / "out/sample_size.csv")
    assert (images["status"] == "not fitted").all() and images["reason"].str.contains(message, regex=False).all()
    fits = pd.read_csv(tmp_path / "out/sample_size_fits.csv")
    assert list(fits["status"]) == ["not fitted", "not fitted"]
    assert ss.plan_lines(images) == [f"No learning curve was fitted: {images['reason'].iloc[0]}."]
    md = (tmp_path / "out/sample_size.md").read_text()
    assert message in md
    backtest = pd.read_csv(tmp_path / "out/sample_size_backtest.csv")
    assert len(backtest) == 2 and backtest["status"].str.startswith("not run:").all()


def test_a_failed_fit_is_reported_with_its_reason(monkeypatch):
    class Stopped:
        success, status, nfev, x = False, 0, 200, np.array([0.5, 0.1, 0.5])
        message = "The maximum number of function evaluations is exceeded."

    monkeypatch.setattr(ss, "_solve", lambda *args: Stopped())
    table = known_curve_table(seed=6)
    result = ss.analyse_sample_size(table, resamples=10)
    assert (result["images"]["status"] == "fit failed").all()
    assert "did not converge (The maximum number" in result["images"]["reason"].iloc[0]
    assert "R18: fit failed: did not converge" in " ".join(result["notes"])


def test_backtest_on_an_exact_curve_has_a_small_error_beside_the_ols():
    table = known_curve_table(seed=7, backbones=("resnet18", "vgg16"), sd=0.0)
    table["test_dice"] += np.where(table["backbone"] == "vgg16", -0.03, 0.0)  # one curve per model
    result = ss.analyse_sample_size(table, resamples=0)
    back = result["backtest"]
    assert sorted(set(back["held_out"])) == [1, 2]  # six sizes: the two largest held out too
    one = back[back["held_out"] == 1]
    assert list(one["size"]) == [10000, 10000] and (one["status"] == "run").all()
    assert one["error"].abs().max() < 1e-4
    assert (one["ols_error"].abs() > 0.01).all()  # log-linear in N: misses the bend
    assert one["observed"].to_numpy() == pytest.approx(one["ols_observed"].to_numpy())
    assert back[back["held_out"] == 2]["error"].abs().max() < 1e-3


def test_best_runs_are_chosen_on_validation_dice_per_model_and_size():
    table = synthetic.metrics_table(seed=8, sizes=(200, 1000, 5000), backbones=("resnet18",), regs=(0.0001,), folds=3)
    data = ss.select_runs(table, runs="best")
    assert len(data) == 3 * 3  # one lr per size, its three folds
    for size, block in data.groupby("size"):
        runs = table[table["size"] == size]
        assert block["lr"].iloc[0] == runs.groupby("lr")["val_dice"].mean().idxmax()
    with pytest.raises(Exception, match="analysis.sample_size.runs"):
        ss.select_runs(table, runs="test")


def test_six_models_and_1000_resamples_fit_in_under_a_minute():
    metrics, *_ = synthetic.analysed(seed=0)
    result = ss.analyse_sample_size(metrics, resamples=1000, seed=123)
    print(f"6 learning curves x 1000 resamples: {result['seconds']:.1f} s")
    assert [f.status for f in result["fits"]] == ["fitted"] * 6
    assert all(f.failed == 0 for f in result["fits"])
    assert result["seconds"] < 60


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_files_are_byte_identical_from_the_same_table_and_which_model_leads_with_the_plan(tmp_path):
    metrics_csv, _ = synthetic.write_tables(
        tmp_path / "in",
        seed=9,
        sizes=(200, 500, 1000, 2500),
        backbones=("efficientnetb5", "resnet18"),
        lrs=(0.001,),
        regs=(0.0001,),
        folds=5,
    )
    outputs = synthetic.rule_outputs("sample_size", tmp_path / "a")
    written = ss.write_sample_size(metrics_csv, outputs, resamples=100, seed=1)
    assert sorted(written) == sorted(outputs.values()) and all(p.is_file() for p in written)
    ss.write_sample_size(metrics_csv, synthetic.rule_outputs("sample_size", tmp_path / "b"), resamples=100, seed=1)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    stats_outputs = synthetic.rule_outputs("stats", tmp_path / "stats")
    write_analysis(metrics_csv, stats_outputs, sample_size_path=tmp_path / "a/sample_size.csv")
    which = (tmp_path / "stats/which_model.md").read_text()
    assert which.index("To reach DICE 0.85: ") < which.index("Which model for my data size? Best model")
    assert "To reach DICE 0.85: " in (tmp_path / "stats/which_model.html").read_text()


def test_schema_defaults_validate_and_the_rule_is_in_the_workflow():
    from snakemake.utils import validate

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["analysis"].pop("sample_size")
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"), set_default=True)
    assert config["analysis"]["sample_size"] == {"targets": list(ss.TARGETS), "resamples": ss.RESAMPLES, "runs": "all"}
    rules = (ROOT / "workflow/rules/stats.smk").read_text()
    assert "rule sample_size:" in rules and "scripts/sample_size.py" in rules
    assert "sample_size=rules.sample_size.output.table_csv" in rules
    assert "*rules.sample_size.output" in (ROOT / "workflow/rules/figures.smk").read_text()
    assert (ROOT / "workflow/report/sample_size.rst").is_file()
