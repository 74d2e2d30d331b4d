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
            locked = pins.get(name, "").split("+")[0]  # torch's CPU build, 2.13.0+cpu, is 2.13.0
            assert locked == version, f"{env.name}: {requirement} but requirements.txt pins {pins.get(name)}"


def test_every_rule_that_runs_code_names_an_existing_environment():
    """Each rule with a script or shell block has a conda: line naming an envs/ file; only the
    aggregate rules (input only: all, analysis) and pack (a run: block that writes a flag
    inside Snakemake) have none."""
    blocks = {}
    for smk in [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]:
        parts = re.split(r"^rule (\w+):", smk.read_text(), flags=re.MULTILINE)
        for name, body in zip(parts[1::2], parts[2::2]):
            blocks[name] = (smk, re.split(r"^\S", body, maxsplit=1, flags=re.MULTILINE)[0])
    assert {"cohort", "prepare", "splits", "train", "merge", "stats", "figures", "all"} <= set(blocks), blocks
    runs_code = {name for name, (_, body) in blocks.items() if re.search(r"^\s+(script|shell|run):", body, re.M)}
    assert runs_code == set(blocks) - {"all", "analysis"}, sorted(runs_code)
    for name in sorted(runs_code):
        smk, body = blocks[name]
        if re.search(r"^\s+run:", body, re.M):
            # a run: block executes inside Snakemake's own process, where conda: cannot apply:
            # only pack's (it writes a flag), which must not need the library
            assert name == "pack" and "unetcap" not in body, f"{smk.name}: rule {name} runs code in Snakemake"
            continue
        env = re.search(r'^\s+conda:\s*\n\s*(?:"([^"]+)"|(\w+))\s*$', body, flags=re.MULTILINE)
        assert env, f"{smk.name}: rule {name} names no conda environment"
        # a path, or a name common.smk gives (train's TRAIN_ENV: one environment per backend)
        paths = [env[1]] if env[1] else re.findall(r'"([^"]+\.yaml)"', common_definition(env[2]))
        assert paths, f"{smk.name}: rule {name}: {env[2]} names no environment file"
        for path in paths:
            assert (smk.parent / path).resolve().is_file(), f"{smk.name}: rule {name}: {path} missing"


def common_definition(name: str) -> str:
    """The line of workflow/rules/common.smk that defines `name`."""
    found = re.search(rf"^{name} = (.*)$", (ROOT / "workflow/rules/common.smk").read_text(), flags=re.MULTILINE)
    assert found, f"common.smk does not define {name}"
    return found[1]


def test_every_environment_installs_the_library():
    """Snakemake runs <env>.post-deploy.sh in each new environment: all of them the one script
    that installs unetcap from the repository."""
    script = ROOT / "envs/install-unetcap.sh"
    assert "pip install --quiet --no-deps --editable ." in script.read_text()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        assert env.with_name(f"{env.stem}.post-deploy.sh").resolve() == script.resolve(), env.name
