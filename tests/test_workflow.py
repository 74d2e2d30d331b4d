"""The real Snakemake DAG: the paper's config builds it; bad config stops it before any job."""

import hashlib
import re

import pytest
import yaml
from snakemake_run import ROOT, copy_workflow, job_counts, snakemake


@pytest.fixture(scope="module")
def lvsc_folders(tmp_path_factory):
    """100 empty patient folders: enough for the DAG (which never reads a file)."""
    root = tmp_path_factory.mktemp("lvsc")
    for p in range(1, 101):
        (root / f"DET{p:05d}01").mkdir()
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def test_paper_config_builds_the_full_dag(lvsc_folders, workdir):
    result = snakemake(workdir, "-n", "--config", f"cohort={{source: lvsc, path: {lvsc_folders}}}")
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts["cohort"] == 1 and counts["prepare"] == 1 and counts["splits"] == 6
    assert counts["train"] == 1620  # the grid: 6 x 6 x 3 x 3 x 5
    assert counts["sample_size"] == 1 and counts["stats"] == 1 and counts["figures"] == 1
    assert not (workdir / "results").exists()


def test_the_recommended_config_builds_the_papers_grid_with_repeats(lvsc_folders, workdir):
    """config/paper_recommended.yaml: the paper's grid, 3, 3, 2, 1, 1, 1 draws of training
    patients per size (each with 5 folds), one study folder of its own."""
    cohort = f"cohort={{source: lvsc, path: {lvsc_folders}}}"
    result = snakemake(workdir, "-n", "--configfile", "config/paper_recommended.yaml", "--config", cohort)
    assert result.returncode == 0, result.stderr + result.stdout
    counts = job_counts(result.stdout)
    assert counts["splits"] == 6 and counts["train"] == 6 * 3 * 3 * 5 * (3 + 3 + 2 + 1 + 1 + 1)
    assert "results/paper_recommended/runs/size200/vgg16/lr0.01_reg0.01/fold14/metrics.json" in result.stdout
    assert "size10000/vgg16/lr0.01_reg0.01/fold5/" not in result.stdout


BAD_CONFIGS = {
    "unknown key": ({"epochs": 3}, "'epochs' was unexpected"),
    "negative size": ({"sizes": [200, -5]}, "instance['sizes'][1]"),
    "non-integer size": ({"sizes": [200, 2.5]}, "instance['sizes'][1]"),
    "unknown encoder": ({"backbones": ["vgg16", "densenet121"]}, "instance['backbones'][1]"),
    "one fold": ({"folds": 1}, "instance['folds']"),
    "lr as YAML text": ({"lrs": ["1e-4"]}, "instance['lrs'][0]"),
    "size too large": ({"sizes": [200, 20000]}, "config key sizes: the cohort cannot give dataset size 20000"),
    "repeats not one per size": ({"repeats": [2, 1]}, "config key repeats: 2 values for 6 sizes"),
    "min_epochs negative": ({"train": {"min_epochs": -1}}, "instance['train']['min_epochs']"),
}


@pytest.mark.parametrize("change,message", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_stops_before_any_job_and_names_the_key(change, message, lvsc_folders, workdir):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["cohort"]["path"] = str(lvsc_folders)
    config.update(change)
    (workdir / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--cores", "1", "--configfile", "bad.yaml")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


STUDY_NAMES = {
    "one config file": (["--configfile", "config/demo.yaml"], "demo"),
    "two config files": (["--configfile", "config/demo.yaml", "config/test.yaml"], "demo+test"),
    "the paper's config by name": (["--configfile", "config/config.yaml"], "paper"),
    "no config file": ([], "paper"),
    "study in --config": (["--configfile", "config/demo.yaml", "--config", "study=lab-1"], "lab-1"),
}


@pytest.mark.parametrize("args,study", STUDY_NAMES.values(), ids=STUDY_NAMES.keys())
def test_every_file_of_a_study_is_in_its_own_folders(args, study, lvsc_folders, workdir):
    """Outputs and logs of every job under results/<study>/ and logs/<study>/, the name
    from the config files given (docs/design.md §7)."""
    paper = [] if "demo" in " ".join(args) else ["--config", f"cohort={{source: lvsc, path: {lvsc_folders}}}"]
    result = snakemake(workdir, "-n", *args, *paper)
    assert result.returncode == 0, result.stderr + result.stdout
    files = [
        f
        for line in re.findall(r"^    (?:output|log): (.*)$", result.stdout, flags=re.MULTILINE)
        for f in line.split(", ")
    ]
    assert len(files) > 50 and job_counts(result.stdout)["train"] > 1
    outside = [f for f in files if not f.startswith((f"results/{study}/", f"logs/{study}/"))]
    assert not outside, outside[:5]


def test_a_config_file_name_that_cannot_name_a_folder_asks_for_study(workdir):
    (workdir / "my study.yaml").write_text((ROOT / "config/test.yaml").read_text())
    result = snakemake(workdir, "-n", "--configfile", "my study.yaml")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "'my study' does not match" in output and "schema['properties']['study']" in output


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tests' tiny study (config/test.yaml: phantom, 32 px, two encoders, two epochs)
    run by the real Snakemake from a copy of the workflow."""
    work = copy_workflow(tmp_path_factory.mktemp("tiny"))
    result = snakemake(work, "--configfile", "config/test.yaml", "--cores", "2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work


@pytest.mark.slow
def test_tiny_study_runs_end_to_end(tiny_study):
    import json

    import pandas as pd

    results = tiny_study / "results/test"  # config/test.yaml: study `test`
    metrics = pd.read_csv(results / "metrics.csv")
    # 1 size x 2 backbones x 1 lr x 1 reg x 2 folds
    assert sorted(zip(metrics.backbone, metrics.fold)) == [
        ("efficientnetb0", 0),
        ("efficientnetb0", 1),
        ("resnet18", 0),
        ("resnet18", 1),
    ]
    assert set(metrics.status) <= {"ok", "diverged"} and (metrics.status == "ok").any()
    assert metrics[["val_dice", "test_dice"]].apply(lambda c: c.between(0, 1)).all().all()
    store = json.loads((results / "prepared/store.json").read_text())
    assert (metrics.provenance_data_sha256 == store["data_sha256"]).all()
    assert (metrics.n_images_train + metrics.n_images_val == 32).all() and (metrics.n_images_test == 8).all()
    for name in ("which_model.md", "table1_ols.csv", "table2_anova.csv", "hsd.csv", "notes.md"):
        assert (results / "analysis" / name).stat().st_size > 0
    for name in ("figure2_left.png", "segmentations.png"):
        assert (results / "figures" / name).stat().st_size > 0
    assert (results / "segmentations.npz").stat().st_size > 0
    assert not list((results / "runs").rglob("checkpoint"))
    assert sorted(p.name for p in (tiny_study / "results").iterdir()) == ["test"]
    assert (tiny_study / "logs/test/merge.log").is_file()
    assert sorted(p.name for p in (tiny_study / "logs").iterdir()) == ["test"]


def tiny_config() -> dict:
    """config/config.yaml with config/test.yaml over it, as Snakemake merges them."""

    def merged(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    base, test = (yaml.safe_load((ROOT / "config" / name).read_text()) for name in ("config.yaml", "test.yaml"))
    return merged(base, test)


# The columns of each merged table (docs/contracts.md, "Files").
DOCUMENTED_METRICS = (
    "size backbone family depth lr reg fold repeat seed status epochs best_epoch params n_images_train "
    "n_images_val n_images_test val_bce val_dice test_bce test_dice n_images_holdout holdout_bce holdout_dice "
    "seconds_train seconds_eval"
).split()
EXTRA_METRICS = ("provenance_", "seconds_", "train_", "data_", "config_seed")  # metrics.json's flattened extras


@pytest.mark.slow
def test_tiny_study_tables_have_a_row_per_run_of_the_grid_and_the_documented_columns(tiny_study):
    import itertools

    import pandas as pd

    from unetcap.merge import HOLDOUT_COLUMNS, METRICS_COLUMNS, RUN_COLUMNS
    from unetcap.metrics import HISTORY_COLUMNS

    config = tiny_config()
    results = tiny_study / "results/test"
    grid = list(
        itertools.product(config["sizes"], config["backbones"], config["lrs"], config["regs"], range(config["folds"]))
    )
    metrics = pd.read_csv(results / "metrics.csv")
    assert sorted(metrics[["size", "backbone", "lr", "reg", "fold"]].itertuples(index=False, name=None)) == sorted(grid)
    assert list(metrics.columns[: len(DOCUMENTED_METRICS)]) == DOCUMENTED_METRICS
    assert list(metrics.columns[: len(METRICS_COLUMNS)]) == METRICS_COLUMNS
    extras = metrics.columns[len(DOCUMENTED_METRICS) :]
    assert all(c.startswith(EXTRA_METRICS) for c in extras), [c for c in extras if not c.startswith(EXTRA_METRICS)]
    assert (metrics["repeat"] == 0).all() and metrics["seed"].nunique() == len(grid)
    assert metrics[["epochs", "best_epoch"]].apply(lambda c: c.between(1, config["train"]["max_epochs"])).all().all()
    assert (metrics.best_epoch <= metrics.epochs).all()
    holdout_patients = round(config["cohort"]["patients"] * config["holdout_fraction"])
    assert (metrics.n_images_holdout == holdout_patients * config["images_per_patient"]).all()

    # histories.csv: the run columns in front, then each epoch of each run
    histories = pd.read_csv(results / "histories.csv")
    own = [c if c != "lr" else "epoch_lr" for c in HISTORY_COLUMNS]
    assert list(histories.columns) == RUN_COLUMNS + own
    epochs = histories.groupby(["backbone", "fold"])["epoch"].agg(list)
    for run in metrics.itertuples():
        assert epochs[run.backbone, run.fold] == list(range(1, run.epochs + 1)), run

    # holdout.csv: a row per run and holdout patient, the same patients for every run
    holdout = pd.read_csv(results / "holdout.csv")
    assert list(holdout.columns) == HOLDOUT_COLUMNS and len(holdout) == len(grid) * holdout_patients
    patients = holdout.groupby(["backbone", "fold"])["patient"].agg(frozenset)
    assert patients.nunique() == 1 and len(patients.iloc[0]) == holdout_patients
    pixels = holdout.groupby(["backbone", "fold"])["pixels"].sum()
    assert (pixels == holdout_patients * config["images_per_patient"] * config["image_size"] ** 2).all()


@pytest.mark.slow
def test_tiny_study_statistics_have_the_rows_the_grid_implies(tiny_study):
    import pandas as pd

    from unetcap.analysis.sample_size import IMAGES_COLUMNS
    from unetcap.study import BACKBONES

    config = tiny_config()
    analysis = tiny_study / "results/test/analysis"
    models = sorted(BACKBONES[b].short for b in config["backbones"])
    runs = len(config["sizes"]) * len(config["lrs"]) * len(config["regs"]) * config["folds"]  # per model
    # config/test.yaml: two families of one depth at one size, lr and reg, so the OLS keeps
    # Family alone of the paper's terms (docs/design.md §11)
    assert {BACKBONES[b].depth for b in config["backbones"]} == {"short"} and len(config["sizes"]) == 1

    def table(name: str, columns: list[str]) -> pd.DataFrame:
        frame = pd.read_csv(analysis / f"{name}.csv")
        assert list(frame.columns) == columns, name
        return frame

    table1 = table("table1_ols", ["term", "estimate", "std_error", "t", "p", "ci_low", "ci_high"])
    assert list(table1.term) == ["Intercept", "Family[T.ResNet]"]
    assert table1[["estimate", "std_error"]].notna().all().all() and (table1.ci_low <= table1.ci_high).all()
    table2 = table("table2_anova", ["term", "sum_sq", "df", "mean_sq", "F", "p", "eta_sq", "partial_eta_sq"])
    assert list(table2.term) == ["Family", "Residuals"]
    assert list(table2.df) == [1, len(models) * runs - 2] and table2.eta_sq.sum() == pytest.approx(1)

    groups = table("hsd_groups", ["model", "backbone", "size", "n", "mean", "sd", "halfwidth", "low", "high"])
    assert sorted(groups.model) == models and (groups.n == runs).all() and set(groups["size"]) == set(config["sizes"])
    pairs = len(groups) * (len(groups) - 1) // 2
    hsd_columns = ["group1", "group2", "model1", "size1", "model2", "size2", "meandiff", "p_adj", "lower", "upper"]
    hsd = table("hsd", [*hsd_columns, "reject"])
    assert len(hsd) == pairs and (hsd.lower <= hsd.upper).all()

    which = table(
        "which_model",
        ["size", "trained", "basis", "rank", "model", "backbone", "best", "n", "mean", "hsd_low", "hsd_high"]
        + ["p_vs_top", "predicted", "predicted_low", "predicted_high", "extrapolated"],
    )
    sizes = sorted([*config["sizes"], *config["analysis"]["predict_sizes"]])
    assert sorted(which["size"].unique()) == sizes and len(which) == len(sizes) * len(models)
    for size, block in which.groupby("size"):
        assert sorted(block.model) == models and sorted(block["rank"]) == list(range(1, len(models) + 1))
        assert (block.trained == (size in config["sizes"])).all() and block.best.any()

    answers = table("sample_size", IMAGES_COLUMNS)
    targets = config["analysis"]["sample_size"]["targets"]
    assert len(answers) == len(models) * len(targets)
    for model, block in answers.groupby("model"):
        assert sorted(block.target) == sorted(targets), model
    # one trained size: too few for a learning curve, and each answer says so
    assert (answers.status == "not answered").all() and answers.reason.str.contains("trained dataset size").all()


@pytest.mark.slow
def test_tiny_study_figures_have_the_pixel_size_the_figure_code_sets(tiny_study):
    import inspect

    import pandas as pd
    from PIL import Image

    from unetcap import figures

    config = tiny_config()
    folder = tiny_study / "results/test/figures"
    models, sizes = len(config["backbones"]), len(config["sizes"])
    terms = pd.read_csv(tiny_study / "results/test/analysis/gam_partial.csv")["term"].nunique()
    per_size = inspect.signature(figures.segmentations).parameters["per_size"].default
    gam_cols = min(4, terms)
    # figsize (inches) as unetcap.figures sets it for this grid; pixels at figures.DPI
    inches = {
        "figure2_left": (max(7.0, 1.5 * sizes + 2), 7.5),
        "figure2_right": (max(7.0, 1.5 * sizes + 2), 4.8),
        "figure3": (4.2 * min(3, models), 3.6 * -(-models // 3)),
        "learning_curves": (2.6 * models + 1, 7.5),
        "gam_partial": (4.0 * gam_cols, 3.4 * -(-terms // gam_cols)),
        "segmentations": (1.55 * per_size * sizes + 0.6, 1.6 * models + 0.6),
        "sample_size": (4.2 * min(3, models), 3.6 * -(-models // 3)),
    }
    assert set(inches) == set(figures.FIGURES)
    for name, (width, height) in inches.items():
        with Image.open(folder / f"{name}.png") as image:
            assert abs(image.width - width * figures.DPI) <= 1 and abs(image.height - height * figures.DPI) <= 1, (
                name,
                image.size,
                (width * figures.DPI, height * figures.DPI),
            )
        assert (folder / f"{name}.pdf").read_bytes().startswith(b"%PDF"), name


def snapshot(*folders):
    """Every file under `folders`: its path, modification time and content hash."""
    return {
        p: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_second_study_in_the_same_folder_leaves_the_first_alone(tiny_study):
    """The tiny study again under another name (the same settings): everything is its own
    to do, it runs (up to the splits) beside the first, and the first's files stay as they
    were, with nothing to do."""
    (tiny_study / "other.yaml").write_text((tiny_study / "config/test.yaml").read_text())
    first = snapshot(tiny_study / "results/test", tiny_study / "logs/test")
    plan = snakemake(tiny_study, "-n", "--configfile", "other.yaml")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert job_counts(plan.stdout) == {
        "phantom": 1,
        "cohort": 1,
        "prepare": 1,
        "splits": 1,
        "train": 4,
        "merge": 1,
        "sample_size": 1,
        "stats": 1,
        "figures": 1,
        "all": 1,
        "total": 13,
    }
    run = snakemake(tiny_study, "results/other/splits/size40.json", "--configfile", "other.yaml", "--cores", "1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tiny_study / "results/other/splits/size40.json").read_bytes() == (
        tiny_study / "results/test/splits/size40.json"
    ).read_bytes()  # same settings, same manifest
    assert (tiny_study / "logs/other/cohort.log").is_file()
    assert snapshot(tiny_study / "results/test", tiny_study / "logs/test") == first
    again = snakemake(tiny_study, "-n", "--configfile", "config/test.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-3000:]


@pytest.mark.slow
def test_a_finished_study_has_nothing_to_do_and_a_crashed_run_is_redone_alone(tiny_study):
    nothing = snakemake(tiny_study, "-n", "--configfile", "config/test.yaml")
    assert nothing.returncode == 0, nothing.stderr[-3000:]
    assert "Nothing to be done" in nothing.stdout + nothing.stderr and job_counts(nothing.stdout) == {}
    # a run that crashed left no metrics.json, so the merge never ran
    (tiny_study / "results/test/runs/size40/resnet18/lr0.001_reg0.0001/fold1/metrics.json").unlink()
    (tiny_study / "results/test/metrics.csv").unlink()
    counts = job_counts(snakemake(tiny_study, "-n", "--configfile", "config/test.yaml").stdout)
    assert counts == {"train": 1, "merge": 1, "sample_size": 1, "stats": 1, "figures": 1, "all": 1, "total": 6}


def test_the_study_is_named_by_its_config_unless_it_names_itself():
    from unetcap.study import study_name

    paper = ROOT / "config/config.yaml"
    assert study_name({}, [], paper) == "paper"
    assert study_name({"study": "lvsc-2024"}, [], paper) == "lvsc-2024"  # set in config/config.yaml or --config
    assert study_name({}, ["config/demo.yaml"], paper) == "demo"
    assert study_name({}, [paper], paper) == "paper"
    assert study_name({}, ["lab/acdc.yaml", "lab/gpu.yml"], paper) == "acdc+gpu"
    assert study_name({"study": "acdc"}, ["lab/acdc.yaml", "lab/gpu.yml"], paper) == "acdc"


def test_lint_is_clean(workdir):
    """`snakemake --lint` has nothing to say (issue 15: no PYTHONPATH set by the workflow)."""
    result = snakemake(workdir, "--lint", "--configfile", "config/demo.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Lints for" not in output, output
