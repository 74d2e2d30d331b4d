"""The conda environments pin what the lock pins."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The conda train environment takes the CUDA-capable tensorflow where the CPU lock has tensorflow-cpu.
SAME_PACKAGE = {"tensorflow": "tensorflow-cpu"}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[normal(name)] = version
    return pins


def test_every_conda_pin_matches_the_lock():
    pins = lock()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        assert "python=3.11" in spec["dependencies"]
        for requirement in pip:
            name, version = requirement.split("==")
            name = SAME_PACKAGE.get(normal(name), normal(name))
            assert pins.get(name) == version, f"{env.name}: {requirement} but requirements.txt pins {pins.get(name)}"


def test_every_rule_names_an_existing_environment():
    rules = (ROOT / "workflow/rules")
    named = 0
    for smk in rules.glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (rules / env).resolve().is_file(), f"{smk.name}: conda env {env} missing"
            named += 1
    assert named >= 8, f"only {named} rules name a conda environment"  # every rule but `all`


def test_every_environment_installs_the_library():
    """Snakemake runs <env>.post-deploy.sh in each new environment: all of them the one script
    that installs unetcap from the repository."""
    script = ROOT / "envs/install-unetcap.sh"
    assert "pip install --quiet --no-deps --editable ." in script.read_text()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        assert env.with_name(f"{env.stem}.post-deploy.sh").resolve() == script.resolve(), env.name
