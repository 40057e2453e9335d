"""Table of the shipped scores stored by fewshot.py collect: AUROC and verdict balanced accuracy (band 0.05),
per dataset, mean over draws.  usage: table.py TAG [TAG...]"""

import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling fewshot.py
from fewshot import CACHE, image_auroc, pixel_aurocs, verdict_bacc

for tag in sys.argv[1:]:
    rows = pickle.load((CACHE / f"fewshot-{tag}.pkl").open("rb"))
    pix = pixel_aurocs(rows)
    agg = {}
    for r in rows:
        s = np.array([q["score"] for q in r["queries"]])
        y = np.array([q["label"] for q in r["queries"]])
        b, tnr, tpr = verdict_bacc(s, y)
        agg.setdefault((r["name"], r["shots"]), []).append(
            (image_auroc(y, s), b, tnr, tpr, r["ms"], r["fit_s"])
        )
    print(f"## {tag}")
    print(
        "| data | refs | pose | image AUROC | verdict bal.acc | TNR | TPR | pixel AUROC | ms/img (1 thread, loaded) | fit s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    poses = {(r["name"], r["shots"]): r["meta"].get("pose", "") for r in rows}
    for key, v in agg.items():
        m = np.mean(v, axis=0)
        print(
            f"| {key[0]} | {key[1]} | {poses[key]} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.2f} | {m[3]:.2f} | {pix.get(key, float('nan')):.3f} | {m[4]:.0f} | {m[5]:.1f} |"
        )
