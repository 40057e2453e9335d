"""Offline: threshold rules (one reference: view level; 2+: median leave-one-out peak) on collected grids (generated + train only).
rule 'rel': f * view level; 'abs': a constant raw threshold T; 'geo': sqrt(f * level * T)."""

import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import CACHE, sigmoid, verdict_bacc

rows = [r for t in sys.argv[1:] for r in pickle.load((CACHE / f"fewshot-{t}.pkl").open("rb"))]


def run(rule, p):
    res = {}
    for r in rows:
        lvl = float(np.median([g.max() for g in r["held"]])) if r["held"] else r["cal"]["level"]
        thr = {"rel": p * lvl, "abs": p, "geo": np.sqrt(1.15 * lvl * p)}[rule]
        s = np.array([q["grid"].max() for q in r["queries"]])
        y = np.array([q["label"] for q in r["queries"]])
        sc = sigmoid((s - thr) / (0.08 * thr))
        res.setdefault(r["name"], []).append(verdict_bacc(sc, y)[0])
    return {k: float(np.mean(v)) for k, v in res.items()}


for rule, grid in (
    ("rel", np.arange(0.5, 2.01, 0.05)),
    ("abs", np.arange(3, 10.01, 0.25)),
    ("geo", np.arange(3, 12.01, 0.25)),
):
    best = max(grid, key=lambda p: np.mean(list(run(rule, p).values())))
    t = run(rule, best)
    print(
        rule,
        round(float(best), 2),
        "mean",
        round(float(np.mean(list(t.values()))), 3),
        {k.split("/")[-1]: round(v, 2) for k, v in t.items()},
    )
