#!/usr/bin/env bash
# The main job: set up, then the 'quick' benchmark suite on Fashion-MNIST (LeNet-5 -> LeNet-5-half, seed 0):
# the teacher, a student trained from scratch, real-data KD, the zskd data-free preset and a DM-condensed set
# with teacher soft labels, then the report (tables + plots). Finished runs are reused; an interrupted suite
# continues where it stopped. Extra arguments go to 'datafree bench run' (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --data
PY="${DATAFREE_VENV:-.venv}/bin/python"
OUT="${DATAFREE_BENCH_OUT:-artifacts/bench/quick}"
"$PY" -m datafree.cli bench run quick --out "$OUT" "$@"
"$PY" -m datafree.cli bench report "$OUT"
cat "$OUT/report.md"
