"""What the whole suite shares: one BLAS thread, and the one place that decides whether the
two groups of tests that need more than Python can run here: R (tests/test_stats_r.py,
fixture `rscript`) and the one-node test Slurm cluster (tests/test_slurm.py, fixture
`slurm_cluster`).

Without R or the cluster their tests skip, and the run ends with one line that names the
skipped groups and the command that runs them. Under CI=true (or UNETCAP_R=1 for R,
UNETCAP_SLURM=1 for Slurm) a missing one fails its tests instead: CI cannot skip them silently.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

# One BLAS thread: the GAM and OLS fits are small, and OpenBLAS's threads only fight
# over the two cores here (the analysis tests ran about 5x slower with them). Must be set
# before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_TOOLS = ("sinfo", "sbatch", "sacct", "scancel")
R_PACKAGES = ("car", "mgcv")
# Each group: its name in the summary, what its skip reason starts with (the summary finds its skips by it), the
# variable that requires it besides CI, and the steps that provide it.
GROUPS = {
    "R": {
        "name": "R",
        "lacking": "no R",
        "variable": "UNETCAP_R",
        "steps": "apt-get install r-base-core r-cran-car r-cran-mgcv",
    },
    "Slurm": {
        "name": "the Slurm test cluster",
        "lacking": "no Slurm test cluster",
        "variable": "UNETCAP_SLURM",
        "steps": "tests/slurm/cluster.sh install && tests/slurm/cluster.sh up",
    },
}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def required(group: str) -> bool:
    """Whether a missing `group` ("R" or "Slurm") fails its tests instead of skipping them."""
    return _truthy("CI") or _truthy(GROUPS[group]["variable"])


def lacking(group: str, problem: str) -> None:
    """Skip the test that needs `group`, or fail it where the group is required."""
    message = f"{GROUPS[group]['lacking']}: {problem}. Provide it with `{GROUPS[group]['steps']}`."
    if required(group):
        pytest.fail(f"{message} (required here: CI=true or {GROUPS[group]['variable']}=1)", pytrace=False)
    pytest.skip(message)


# --------------------------------------------------------------------------- R
@functools.cache
def r_problem() -> str | None:
    """Why R cannot run the comparisons (Rscript with car and mgcv), or None when it can."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return "`Rscript` is not on PATH"
    packages = ", ".join(f"'{p}'" for p in R_PACKAGES)
    check = f"for (p in c({packages})) if (!requireNamespace(p, quietly = TRUE)) cat(p, '')"
    try:
        run = subprocess.run([rscript, "-e", check], capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return "`Rscript` hangs"
    if run.returncode != 0:
        return f"`Rscript` fails: {run.stderr.strip()[-300:]}"
    if run.stdout.split():
        return f"R package(s) {', '.join(run.stdout.split())} not installed"
    return None


@pytest.fixture(scope="session")
def rscript() -> str:
    """The Rscript on PATH, with R's car and mgcv: skips (or fails, where R is required) without."""
    problem = r_problem()
    if problem is not None:
        lacking("R", problem)
    return shutil.which("Rscript")


# --------------------------------------------------------------------------- Slurm
def tool(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """A command's output, whatever its exit status."""
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)


def cluster_problem() -> str | None:
    """Why the test cluster cannot run jobs, or None when it can."""
    for name in SLURM_TOOLS:
        if shutil.which(name) is None:
            return f"`{name}` is not installed"
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    if not conf.exists():  # (the tools would retry for a minute)
        return f"no Slurm configuration at {conf}"
    try:
        sinfo = tool("sinfo", "-h", "-N", "-o", "%N %T %G")
        if sinfo.returncode != 0:
            return f"sinfo fails: {sinfo.stderr.strip()}"
        nodes = [line.split() for line in sinfo.stdout.splitlines() if line.strip()]
        usable = [n for n in nodes if n[1].rstrip("*~#") in {"idle", "mixed", "allocated"}]
        if not usable:
            return f"no usable node (sinfo: {sinfo.stdout.strip() or 'nothing'})"
        if not any("gpu" in n[2] for n in usable):
            return "no node with a gpu gres (is this the test cluster of tests/slurm?)"
        sacct = tool("sacct", "-n", "-X", "-S", "now-1minutes")
        if sacct.returncode != 0:
            return f"sacct fails (slurmdbd down?): {sacct.stderr.strip()}"
    except subprocess.TimeoutExpired as err:
        return f"`{' '.join(err.cmd)}` hangs"
    return None


def cluster_env(root: str | None = None) -> dict[str, str]:
    """The variables that point the client tools (and srun inside jobs) at the test
    cluster of `root` (default: $SLURM_TEST_ROOT, else this checkout's): `cluster.sh env`."""
    env = dict(os.environ, SLURM_TEST_ROOT=root) if root else None
    out = subprocess.run([str(CLUSTER_SH), "env"], check=True, capture_output=True, text=True, env=env)
    return dict(shlex.split(line)[1].split("=", 1) for line in out.stdout.splitlines())


@pytest.fixture(scope="session")
def slurm_cluster():
    """This run's cluster: its SLURM_CONF and srun in the environment of every command.
    Skips (or fails, where Slurm is required) without a usable cluster."""
    missing = [name for name in SLURM_TOOLS if shutil.which(name) is None]
    problem = f"`{missing[0]}` is not installed" if missing else None
    if problem is None:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in cluster_env().items():
                patch.setenv(name, value)
            problem = cluster_problem()
            if problem is None:
                yield
                return
    lacking("Slurm", problem)


# --------------------------------------------------------------------------- the report
def skipped_groups(reports) -> dict[str, dict[str, int]]:
    """{group: {test file: tests skipped}} of the skip reports that lacked R or the cluster."""
    found: dict[str, dict[str, int]] = {}
    for report in reports:
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        for group, spec in GROUPS.items():
            if reason.startswith(f"{spec['lacking']}: "):
                files = found.setdefault(group, {})
                path = report.nodeid.split("::", 1)[0]
                files[path] = files.get(path, 0) + 1
    return found


def skip_line(found: dict[str, dict[str, int]]) -> str:
    """The one line that names the groups skipped and how to run them."""
    what = "; ".join(
        f"for lack of {GROUPS[group]['name']}: "
        + ", ".join(f"{path} ({n} test{'s' * (n != 1)})" for path, n in files.items())
        for group, files in found.items()
    )
    steps = " && ".join(GROUPS[group]["steps"] for group in found)
    paths = " ".join(dict.fromkeys(path for files in found.values() for path in files))
    return (
        f"unetcap: skipped {what}. Run them with `sudo .ci/run`, or `{steps} && .venv/bin/pytest {paths}`"
        " (under CI=true they fail instead of skipping)"
    )


def pytest_report_header(config):
    return "unetcap: " + "; ".join(
        f"without {GROUPS[group]['name']} its tests {'fail (required here)' if required(group) else 'skip'}"
        for group in GROUPS
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """After pytest's own summary (-ra's list included): the skipped groups, in one line."""
    result = yield
    found = skipped_groups(terminalreporter.stats.get("skipped", []))
    if found:
        terminalreporter.write_line(skip_line(found), yellow=True, bold=True)
    return result
