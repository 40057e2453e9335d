"""Probe: does the references' dominant-orientation spread separate free from fixed pose? (train/generated only)"""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from riad_agent.data.synthetic import generate_sample


def orient(image, side=128, sigma=1.5):
    a = np.asarray(image.convert("L").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float64)
    a = ndimage.gaussian_filter(a, sigma)
    gy, gx = ndimage.sobel(a, 0), ndimage.sobel(a, 1)
    ys, xs = np.mgrid[0:side, 0:side] - (side - 1) / 2
    m = np.hypot(xs, ys) <= side / 2 - 2
    z = ((gx + 1j * gy) ** 2)[m]
    v = z.sum() / (np.abs(z).sum() + 1e-9)
    return v


def resultant(images):
    vs = np.array([orient(i) for i in images])
    u = vs / (np.abs(vs) + 1e-12)
    return float(np.abs(u.mean())), float(np.abs(vs).mean())


rng = np.random.default_rng(0)
for cat in ["hazelnut", "transistor"]:
    ps = sorted(str(p) for p in Path(f"../shared/data/mvtec_subset/{cat}/train/good").glob("*.png"))
    for n in (2, 3, 4, 8):
        rs = [
            resultant([Image.open(ps[i]) for i in rng.choice(len(ps), n, replace=False)]) for _ in range(40)
        ]
        r = np.array(rs)
        print(
            cat,
            n,
            f"R mean {r[:, 0].mean():.2f} min {r[:, 0].min():.2f} max {r[:, 0].max():.2f} | coherence {r[:, 1].mean():.2f}",
        )
for cat in [
    "synthetic/washer",
    "synthetic/bracket",
    "synthetic/bracket-loose",
    "synthetic/tile",
    "synthetic/fabric",
]:
    for n in (2, 4):
        rs = np.array(
            [resultant([generate_sample(cat, None, 100 * d + s).image for s in range(n)]) for d in range(6)]
        )
        print(
            cat,
            n,
            f"R mean {rs[:, 0].mean():.2f} min {rs[:, 0].min():.2f} max {rs[:, 0].max():.2f} | coherence {rs[:, 1].mean():.2f}",
        )
