"""The real Snakemake DAG: the paper's config builds it; bad config stops it before any job."""

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


BAD_CONFIGS = {
    "unknown key": ({"epochs": 3}, "'epochs' was unexpected"),
    "negative size": ({"sizes": [200, -5]}, "instance['sizes'][1]"),
    "non-integer size": ({"sizes": [200, 2.5]}, "instance['sizes'][1]"),
    "unknown encoder": ({"backbones": ["vgg16", "densenet121"]}, "instance['backbones'][1]"),
    "one fold": ({"folds": 1}, "instance['folds']"),
    "lr as YAML text": ({"lrs": ["1e-4"]}, "instance['lrs'][0]"),
    "size too large": ({"sizes": [200, 20000]}, "config key sizes: the cohort cannot give dataset size 20000"),
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

    metrics = pd.read_csv(tiny_study / "results/metrics.csv")
    # 1 size x 2 backbones x 1 lr x 1 reg x 2 folds
    assert sorted(zip(metrics.backbone, metrics.fold)) == [
        ("efficientnetb0", 0), ("efficientnetb0", 1), ("resnet18", 0), ("resnet18", 1)]
    assert set(metrics.status) <= {"ok", "diverged"} and (metrics.status == "ok").any()
    assert metrics[["val_dice", "test_dice"]].apply(lambda c: c.between(0, 1)).all().all()
    store = json.loads((tiny_study / "results/prepared/store.json").read_text())
    assert (metrics.provenance_data_sha256 == store["data_sha256"]).all()
    assert (metrics.n_images_train + metrics.n_images_val == 32).all() and (metrics.n_images_test == 8).all()
    for name in ("which_model.md", "table1_ols.csv", "table2_anova.csv", "hsd.csv", "notes.md"):
        assert (tiny_study / "results/analysis" / name).stat().st_size > 0
    for name in ("figure2_left.png", "segmentations.png"):
        assert (tiny_study / "results/figures" / name).stat().st_size > 0
    assert (tiny_study / "results/segmentations.npz").stat().st_size > 0
    assert not list((tiny_study / "results/runs").rglob("checkpoint"))


@pytest.mark.slow
def test_a_finished_study_has_nothing_to_do_and_a_crashed_run_is_redone_alone(tiny_study):
    nothing = snakemake(tiny_study, "-n", "--configfile", "config/test.yaml")
    assert nothing.returncode == 0, nothing.stderr[-3000:]
    assert "Nothing to be done" in nothing.stdout + nothing.stderr and job_counts(nothing.stdout) == {}
    # a run that crashed left no metrics.json, so the merge never ran
    (tiny_study / "results/runs/size40/resnet18/lr0.001_reg0.0001/fold1/metrics.json").unlink()
    (tiny_study / "results/metrics.csv").unlink()
    counts = job_counts(snakemake(tiny_study, "-n", "--configfile", "config/test.yaml").stdout)
    assert counts == {"train": 1, "merge": 1, "sample_size": 1, "stats": 1, "figures": 1, "all": 1, "total": 6}
