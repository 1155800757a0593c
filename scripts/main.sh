#!/usr/bin/env bash
# The main job: set up, train a LeNet-5 teacher on Fashion-MNIST, distill LeNet-5-half with
# real-data KD (and from scratch for reference), print the results table. Reuses finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --data
exec "${DATAFREE_VENV:-.venv}/bin/python" -m benchmarks.baselines --profile quick "$@"
