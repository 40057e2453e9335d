#!/usr/bin/env bash
# Install riad-agent with its dev extra, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh dev
VENV="${VENV:-.venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0
echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== mypy"
"$VENV/bin/mypy" riad_agent graphs tools knowledge
echo "== pytest"
# The console script, not `python -m pytest`: tests must import the installed package, not the checkout.
"$VENV/bin/pytest" "$@"
