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
    assert counts.get("train", 1620) == 1620  # the grid: 6 x 6 x 3 x 3 x 5
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
