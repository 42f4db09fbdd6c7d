#!/usr/bin/env bash
# Create ./.venv and install the pinned stack (requirements.lock) plus this package, editable.
# Idempotent: a second run only checks a stamp. Works on a fresh machine with Python >= 3.10.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "calql-repro needs Python >= 3.10")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.calql-installed
if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing the pinned stack into .venv (a few minutes on a fresh machine)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, alone: on these machines `torch==2.13.0` resolves to a local CPU wheel,
  # while an unpinned torch would pull a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi
