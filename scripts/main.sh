#!/usr/bin/env bash
# The main job: set up, then the 'quick' benchmark suite on Fashion-MNIST (LeNet-5 with BatchNorm -> LeNet-5-half,
# seed 0): the teacher, a student trained from scratch, real-data KD, the data-free deepinversion+adi recipe
# (BN-statistics matching, then adversarial growth against the student), a DM-condensed set and a teacher-only
# condensed set, then the privacy audit of the data-free set and students, then the report (tables + plots). The
# teacher trains first; the other runs share the cores (--jobs 2). Finished runs are reused; an interrupted suite
# continues where it stopped. Extra arguments go to 'datafree bench run' (e.g. --device cuda, --jobs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --data
PY="${DATAFREE_VENV:-.venv}/bin/python"
OUT="${DATAFREE_BENCH_OUT:-artifacts/bench/quick}"
"$PY" -m datafree.cli bench run quick --out "$OUT" --jobs 2 "$@"
"$PY" -m datafree.cli bench audit "$OUT"
"$PY" -m datafree.cli bench report "$OUT"
cat "$OUT/report.md"
