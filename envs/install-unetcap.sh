#!/usr/bin/env bash
# Installs the workflow's library, unetcap, into a rule's conda environment: Snakemake
# (--sdm conda) runs <env>.post-deploy.sh, a link to this script, inside each environment of
# envs/ right after creating it, from its working directory. Editable, so the environment
# follows the code without being rebuilt; --no-deps: the environment file pins the rest.
set -euo pipefail
if ! grep -qs '^name = "unetcap"$' pyproject.toml; then
  echo "envs/install-unetcap.sh: run snakemake from the repository root (no unetcap pyproject.toml in $PWD)" >&2
  exit 1
fi
python -m pip install --quiet --no-deps --editable .
