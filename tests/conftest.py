"""Test-suite root: offline model hubs for every test.

Shared fakes and tiny models live in ``tests/support`` and import as ``support`` (pytest's
``pythonpath = ["tests"]`` in pyproject.toml).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
