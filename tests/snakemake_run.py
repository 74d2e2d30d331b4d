"""Run the real workflow from a copy in a temporary folder (results never land in the repo)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = ["Snakefile", "config", "workflow", "profiles", "slurm", "src", "envs"]


def copy_workflow(dest: Path) -> Path:
    """The workflow's files (not results, logs or .snakemake) copied into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_symlink():  # `slurm`, the link to profiles/slurm
            (dest / part).symlink_to(src.readlink())
        elif src.is_dir():
            shutil.copytree(src, dest / part, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / part)
    return dest


def snakemake(workdir: Path, *args, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """`python -m snakemake ARGS` in `workdir`, with this interpreter; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_counts(stdout: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run, as {rule: count}."""
    if "Job stats:" not in stdout:
        return {}
    counts = {}
    for line in stdout[stdout.index("Job stats:") :].splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts
