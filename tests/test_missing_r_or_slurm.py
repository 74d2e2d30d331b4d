"""A missing R or test Slurm cluster (conftest.py): its tests skip and the run ends with one
line that names them and the command that runs them; under CI=true (or UNETCAP_R=1,
UNETCAP_SLURM=1) they fail instead. Each case is pytest in a subprocess, with conftest.py as
its plugin, on a generated file of two tests (one per group) and a PATH without Rscript
or Slurm's tools."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NEEDS_BOTH = """\
def test_needs_r(rscript):
    pass


def test_needs_slurm(slurm_cluster):
    pass
"""


@pytest.fixture
def run_without_r_or_slurm(tmp_path):
    (tmp_path / "test_needs_both.py").write_text(NEEDS_BOTH)
    (tmp_path / "bin").mkdir()  # PATH: nothing on it, so neither Rscript nor sinfo

    def run(**variables) -> tuple[int, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"CI", "UNETCAP_R", "UNETCAP_SLURM", "PYTEST_ADDOPTS"}}
        env.update(PATH=str(tmp_path / "bin"), PYTHONPATH=str(TESTS), **variables)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-rs", "test_needs_both.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return proc.returncode, proc.stdout + proc.stderr

    return run


def skip_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("unetcap: skipped for lack of")]


def test_without_ci_both_groups_skip_and_one_line_names_them_and_the_command(run_without_r_or_slurm):
    code, output = run_without_r_or_slurm()
    assert code == 0 and "2 skipped" in output, output
    assert "no R: `Rscript` is not on PATH" in output and "no Slurm test cluster: `sinfo` is not installed" in output
    (line,) = skip_lines(output)
    assert "R: test_needs_both.py (1 test)" in line and "Slurm test cluster: test_needs_both.py (1 test)" in line
    assert ".ci/run" in line and "apt-get install r-base-core r-cran-car r-cran-mgcv" in line
    assert "tests/slurm/cluster.sh install && tests/slurm/cluster.sh up" in line and "pytest" in line


def test_under_ci_a_missing_r_or_cluster_fails(run_without_r_or_slurm):
    code, output = run_without_r_or_slurm(CI="true")
    assert code == 1 and "2 errors" in output and "skipped" not in output, output
    assert output.count("(required here: CI=true or UNETCAP_R=1)") == 1, output
    assert output.count("(required here: CI=true or UNETCAP_SLURM=1)") == 1, output
    assert not skip_lines(output)


@pytest.mark.parametrize(
    "variable,skipped,not_named",
    [
        ("UNETCAP_R", "for lack of the Slurm test cluster", "r-base-core"),
        ("UNETCAP_SLURM", "for lack of R", "cluster.sh"),
    ],
)
def test_each_group_can_be_required_alone(run_without_r_or_slurm, variable, skipped, not_named):
    code, output = run_without_r_or_slurm(**{variable: "1"})
    assert code == 1 and "1 error" in output and "1 skipped" in output, output
    assert f"(required here: CI=true or {variable}=1)" in output
    (line,) = skip_lines(output)
    assert skipped in line and not_named not in line, line
