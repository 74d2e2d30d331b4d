"""The config's schema, workflow/schemas/config.schema.yaml: the one place where a default or
a bound of the config is written.

The workflow validates the whole config against it (common.smk, Snakemake's `validate` with
defaults); the library reads the same file for the sections it is handed, so that a run
started from a benchmark or a test gets the defaults and the checks a workflow run gets,
and no default is written twice. The schema is read from the repository the package is
installed from (setup.sh and the rules' environments install it editable).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import jsonschema
import yaml

from unetcap import UnetcapError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@cache
def _schema() -> dict:
    if not SCHEMA_PATH.is_file():
        raise UnetcapError(
            f"{SCHEMA_PATH}: the config schema is not there; install unetcap editable from the "
            "repository (`pip install --no-deps -e .`, as setup.sh does)"
        )
    return yaml.safe_load(SCHEMA_PATH.read_text())


def section(*keys: str) -> dict:
    """The schema of config key `keys` (e.g. "train", or "analysis", "sample_size"); a copy."""
    node = _schema()
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node)


def default(*keys: str):
    """The schema's default of config key `keys`."""
    return section(*keys)["default"]


def allowed(*keys: str) -> tuple:
    """The values config key `keys` may take (its `enum`)."""
    return tuple(section(*keys)["enum"])


def _fill_defaults(validator, properties, instance, schema):
    """jsonschema's `properties` that first writes each missing property's default."""
    if isinstance(instance, dict):
        for name, sub in properties.items():
            if "default" in sub and name not in instance:
                instance[name] = copy.deepcopy(sub["default"])
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, schema)


_Filling = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _fill_defaults})


def validated(values: dict | None, *keys: str) -> dict:
    """`values` of config key `keys` checked against the schema, with its defaults filled in
    (nested ones too); every problem in one UnetcapError that names `keys.<key>`."""
    filled = copy.deepcopy(dict(values or {}))
    errors = sorted(_Filling(section(*keys)).iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'.'.join([*keys, *map(str, e.absolute_path)])}: {e.message}" for e in errors]
        raise UnetcapError("bad config: " + "; ".join(lines) + f" (the rules: {SCHEMA_PATH.name})")
    return filled
