"""Several training runs per GPU (UNETCAP_RUNS_PER_GPU, workflow/rules/pack.smk), as dry
runs of the tiny study: unset, the DAG has no packs; above 1, the runs in grid order, k at
a time, each pack with its runs one group job. tests/test_slurm.py runs them on Slurm."""

import os
import re

import pytest
from snakemake_run import copy_workflow, job_counts, snakemake

RUNS = [  # the tiny study's runs (config/test.yaml), in grid order
    f"results/test/runs/size40/{backbone}/lr0.001_reg0.0001/fold{fold}"
    for backbone in ("resnet18", "efficientnetb0")
    for fold in (0, 1)
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("pack"))


def dry_run(workdir, runs_per_gpu: str | None):
    env = {k: v for k, v in os.environ.items() if k != "UNETCAP_RUNS_PER_GPU"}
    if runs_per_gpu is not None:
        env["UNETCAP_RUNS_PER_GPU"] = runs_per_gpu
    return snakemake(workdir, "-n", "--configfile", "config/test.yaml", env=env)


def test_without_the_variable_there_are_no_packs(workdir):
    unset, one = dry_run(workdir, None), dry_run(workdir, "1")
    assert unset.returncode == 0 and one.returncode == 0, unset.stderr + one.stderr
    counts = job_counts(unset.stdout)
    assert "pack" not in counts and counts["train"] == 4 and counts["total"] == 13, counts
    assert job_counts(one.stdout) == counts
    assert "Group job gpu" not in unset.stdout


def test_the_runs_go_k_at_a_time_in_grid_order_each_pack_one_group_job(workdir):
    result = dry_run(workdir, "3")
    assert result.returncode == 0, result.stderr + result.stdout
    assert job_counts(result.stdout)["pack"] == 2 and job_counts(result.stdout)["train"] == 4
    packs = {
        int(n): [path.removesuffix("/metrics.json") for path in inputs.split(", ")]
        for inputs, n in re.findall(
            r"rule pack:\n\s+input: ([^\n]*)\n\s+output: results/test/packs/pack(\d+)\.done", result.stdout
        )
    }
    assert packs == {0: RUNS[:3], 1: RUNS[3:]}, packs
    # two group jobs "gpu": a pack's runs and its pack job
    groups = result.stdout.split("Group job gpu")[1:]
    assert len(groups) == 2, result.stdout[-3000:]
    for group in groups:
        group = group.split("Group job summary")[0]
        pack = int(re.search(r"packs/pack(\d+)\.done", group)[1])
        trained = re.findall(r"output: (results/test/runs/\S+)/metrics\.json", group)
        assert sorted(trained) == sorted(packs[pack]), (pack, trained)


@pytest.mark.parametrize("value", ["0", "four", "-2"])
def test_a_bad_value_stops_the_workflow_and_names_the_variable(workdir, value):
    result = dry_run(workdir, value)
    assert result.returncode != 0
    assert f"UNETCAP_RUNS_PER_GPU={value!r}" in result.stdout + result.stderr
