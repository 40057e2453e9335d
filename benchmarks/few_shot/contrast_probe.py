"""Offline probe on collected grids: does a self-normalised image score (peak / a quantile of the same
grid) transfer across categories better than the raw peak? Usage: contrast_probe.py TAG [TAG...]"""

import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import CACHE, image_auroc


def stat(grid, kind):
    g = grid.ravel()
    if kind == "peak":
        return float(g.max())
    q = float(kind[1:]) / 100
    return float(g.max() / (np.quantile(g, q) + 1e-9))


for tag in sys.argv[1:]:
    rows = pickle.load((CACHE / f"fewshot-{tag}.pkl").open("rb"))
    for kind in ("peak", "q50", "q75", "q90"):
        line = []
        for r in rows:
            s = np.array([stat(q["grid"], kind) for q in r["queries"]])
            y = np.array([q["label"] for q in r["queries"]])
            line.append((r["name"].split("/")[-1][:9], image_auroc(y, s), np.max(s[~y]), np.median(s[y])))
        print(tag, kind, " ".join(f"{n}:{a:.2f}[nmax {m:.2f} amed {d:.2f}]" for n, a, m, d in line))
