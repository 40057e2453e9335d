"""Probe: defect typing with the region describer's words fused into the exemplar similarity.

    HF_HUB_OFFLINE=1 python benchmarks/typing_descriptors.py LAYOUT K W [W ...]

Leave-one-out as ``riad eval typing`` (mask boxes), similarity = (1 - w) x the channel-mean region
cosine + w x the cosine of a small descriptor vector from ``describe_regions`` on the mask (shape and
contrast one-hots, lightness and colour shift, area share, elongation, fill). Generated layouts only
(choose w here; the shared subset gives the final figure once the fusion ships).
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from riad_agent.eval.typing_eval import labelled_defects, mask_box
from riad_agent.products import ImageEmbedder
from riad_agent.products.embedding import describe_box, words_vector

emb = ImageEmbedder()


def desc_vec(image, mask):
    """The shipped words vector (riad_agent.products.embedding.words_vector) of the mask's region."""
    m = (np.asarray(Image.open(mask).convert("L")) > 127).astype(np.float32)
    return words_vector(describe_box(image, m, mask_box(mask), refine=False))


def run(root, K, weights):
    out = {}
    for cat in sorted(p for p in Path(root).iterdir() if (p / "test").is_dir()):
        items = labelled_defects(cat)
        feats = {}
        for it in items:
            im = Image.open(it.path).convert("RGB")
            feats[it.path] = (emb.features(im).region_vector(mask_box(it.mask)), desc_vec(im, it.mask))
        for w in weights:
            rng = np.random.default_rng(0)
            right = 0
            types = sorted({i.defect_type for i in items})
            for it in items:
                sc = []
                for t in types:
                    pool = [o for o in items if o.defect_type == t and o.path != it.path]
                    ch = [pool[i] for i in rng.permutation(len(pool))[:K]]
                    q = feats[it.path]
                    sc.append(
                        (
                            t,
                            max(
                                (1 - w) * float(q[0] @ feats[c.path][0]) + w * float(q[1] @ feats[c.path][1])
                                for c in ch
                            ),
                        )
                    )
                right += max(sc, key=lambda p: p[1])[0] == it.defect_type
            out.setdefault(w, []).append(right / len(items))
    for w, v in out.items():
        print(root, "K", K, "w", w, "per cat", [round(x, 3) for x in v], "mean", round(float(np.mean(v)), 3))


run(sys.argv[1], int(sys.argv[2]), [float(x) for x in sys.argv[3:]])
