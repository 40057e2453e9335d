"""Offline: threshold = f * median(LOO) + b * (max(LOO) - median(LOO)) on collected grids (2+ refs).
usage: spread_rule.py TAG [TAG...]"""

import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import CACHE, sigmoid, verdict_bacc

rows = [r for t in sys.argv[1:] for r in pickle.load((CACHE / f"fewshot-{t}.pkl").open("rb")) if r["held"]]


def run(f, b):
    res = {}
    for r in rows:
        held = np.array([g.max() for g in r["held"]])
        med = np.median(held)
        thr = f * med + b * (held.max() - med)
        s = np.array([q["grid"].max() for q in r["queries"]])
        y = np.array([q["label"] for q in r["queries"]])
        res.setdefault(r["name"], []).append(verdict_bacc(sigmoid((s - thr) / (0.08 * thr)), y))
    return {k: tuple(np.mean(v, axis=0).round(2)) for k, v in res.items()}


for f in (1.05, 1.1, 1.15, 1.2):
    for b in (0.0, 0.25, 0.5, 0.75):
        t = run(f, b)
        print(
            f,
            b,
            round(float(np.mean([v[0] for v in t.values()])), 3),
            {k.split("/")[-1][:9] + ("R" if "rot" in k else ""): v for k, v in t.items()},
        )
