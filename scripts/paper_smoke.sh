#!/usr/bin/env bash
# The paper benchmark's smoke twin, whole: every task of config/paper.yaml x every method, end to
# end on the real environments, at tiny budgets (config/paper-smoke.yaml; its scores mean nothing).
#
#   bash scripts/paper_smoke.sh                 # all 10 tasks x 8 methods, then the run checks
#   bash scripts/paper_smoke.sh --cores 2       # extra arguments go to snakemake (default --cores all)
#
# 1. makes real-format data locally (tests/paper_data.py: Minari datasets under the paper's ids,
#    written by minari from rollouts of the real environments, and the official-structure Adroit
#    .npy files) in data/paper-smoke/, unless already there;
# 2. runs the workflow with MINARI_DATASETS_PATH pointing there (HF_HUB_OFFLINE: never download);
# 3. checks every finished run against its domain's conventions (python -m analysis check-runs),
#    writing results/paper-smoke/summary/run_checks.csv; exits 1 if any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=data/paper-smoke
if [ ! -f "$DATA/.complete" ]; then
  .venv/bin/python -m tests.paper_data "$DATA"
  touch "$DATA/.complete"
fi
export MINARI_DATASETS_PATH="$PWD/$DATA/minari" HF_HUB_OFFLINE=1
if [ $# -eq 0 ]; then set -- --cores all; fi
.venv/bin/snakemake all "$@" --configfile config/paper-smoke.yaml  # the target first: --configfile takes several files
.venv/bin/python -m analysis check-runs --config config/paper-smoke.yaml
