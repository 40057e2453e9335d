#!/usr/bin/env bash
# Install riad-agent and run `riad demo` on the embedded default (no network, no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh builtin
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${VENV:-.venv}/bin/riad" demo "$@"
