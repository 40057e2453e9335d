"""Product recognition on the shared MVTec subset and generated products; ELPV cells as unknown products.

    HF_HUB_OFFLINE=1 python benchmarks/recognition_shared.py

Registers hazelnut and transistor (4 train/good images each, ../shared/data/mvtec_subset) and four
generated products (4 normal samples each), then recognises every shared test image and 20 generated
queries (normal and defective), and 40 ELPV cells (unregistered: should be unknown).
"""

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from riad_agent.data.synthetic import generate_sample
from riad_agent.knowledge.local_store import LocalStore
from riad_agent.products import ImageEmbedder, ProductFiles, ProductRegistry

emb = ImageEmbedder()
root = Path(tempfile.mkdtemp())
reg = ProductRegistry(LocalStore(root / "qdrant"), ProductFiles(root / "products"), emb)
M = Path("/work/shared/data/mvtec_subset")
for cat, pose in (("hazelnut", "free"), ("transistor", "fixed")):
    refs = [Image.open(p).convert("RGB") for p in sorted((M / cat / "train/good").glob("*.png"))[:4]]
    reg.add(cat, refs, pose=pose)
for cat in ("washer", "tile", "fabric", "bracket"):
    reg.add(cat, [generate_sample(f"synthetic/{cat}", None, s, 256).image for s in range(4)])
right = total = 0
for cat in ("hazelnut", "transistor"):
    for p in sorted((M / cat / "test").glob("*/*.png")):
        r = reg.recognise(Image.open(p).convert("RGB"))
        total += 1
        right += r.product == cat
        if r.product != cat:
            print("miss", p, r.product, r.nearest, round(r.similarity, 3))
for cat in ("washer", "tile", "fabric", "bracket"):
    for s, d in enumerate((None, "scratch", "hole", "stain", "colour")):
        r = reg.recognise(generate_sample(f"synthetic/{cat}", d, 900 + s, 256).image)
        total += 1
        right += r.product == cat
        if r.product != cat:
            print("miss", cat, d, r.product, r.nearest, round(r.similarity, 3))
print("registered right", right, "/", total, round(right / total, 3))
try:
    from elpv_dataset.utils import load_dataset
except ImportError:
    print("elpv-dataset is not installed: no unknown-product check")
else:
    images, _, _ = load_dataset()
    idx = np.random.default_rng(0).permutation(len(images))[:40]
    rej = sum(reg.recognise(Image.fromarray(images[i]).convert("RGB")).product is None for i in idx)
    print("ELPV unknown rejected", rej, "/", len(idx))
for cat in ("bracket-loose",):
    rej = 0
    for s in range(10):
        rej += reg.recognise(generate_sample(f"synthetic/{cat}", None, 950 + s, 256).image).product is None
    print(cat, "(unregistered) rejected", rej, "/ 10 (the same part as bracket, turned)")
