#!/usr/bin/env bash
# The whole test suite (tiny data written by the tests; no dataset or GPU needed), plus ruff.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${DATAFREE_VENV:-.venv}"
"$VENV/bin/ruff" check datafree tests benchmarks examples
exec "$VENV/bin/python" -m pytest -q "$@"
