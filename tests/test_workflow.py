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
