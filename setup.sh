#!/usr/bin/env bash
# Sets up everything the workflow and its tests need in .venv (Python 3.11, CPU TensorFlow):
# the pinned lock and the workflow's library, unetcap, installed editable from this clone.
# Idempotent: does nothing when .venv already holds exactly requirements.txt and this
# clone's pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
stamp=.venv/.requirements.sha256
want=$( (sha256sum requirements.txt pyproject.toml; pwd -P) | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# requirements.txt is a complete lock (every package, pinned): install it exactly, without
# resolving. That keeps tf-keras from pulling the full `tensorflow` beside tensorflow-cpu.
.venv/bin/python -m pip install --quiet --no-deps -r requirements.txt
# The library, editable: the workflow, its rule scripts and the tests import `unetcap` as an
# installed package (no sys.path or PYTHONPATH anywhere), and see every change in src/.
.venv/bin/python -m pip install --quiet --no-deps --editable .
echo "$want" > "$stamp"
