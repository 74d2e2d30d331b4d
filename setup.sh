#!/usr/bin/env bash
# Sets up everything the workflow and its tests need in .venv (Python 3.11, CPU TensorFlow).
# Idempotent: does nothing when .venv already holds exactly requirements.txt.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# requirements.txt is a complete lock (every package, pinned): install it exactly, without
# resolving. That keeps tf-keras from pulling the full `tensorflow` beside tensorflow-cpu.
.venv/bin/python -m pip install --quiet --no-deps -r requirements.txt
echo "$want" > "$stamp"
