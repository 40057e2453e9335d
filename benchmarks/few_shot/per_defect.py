"""Per-image scores on an MVTec-layout folder (generated data or train only!), to see which defects fail.
usage: per_defect.py ROOT SHOTS [CONFIG_JSON] [POSE]"""

import json
import sys
from pathlib import Path

import torch

from riad_agent.eval.expert_eval import _images_in, _open, _pick
from riad_agent.expert import ExpertConfig, PatchCoreExpert

torch.set_num_threads(1)
root, shots = Path(sys.argv[1]), int(sys.argv[2])
config = ExpertConfig(heatmap=False, **(json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
pose = sys.argv[4] if len(sys.argv) > 4 else None
expert = PatchCoreExpert(config)
for cat in sorted(p.name for p in root.iterdir() if (p / "train/good").is_dir()):
    refs = [_open(p) for p in _pick(_images_in(root / cat / "train/good"), shots, 0)]
    bank = expert.fit(refs, pose=pose)
    out = {}
    for d in sorted((root / cat / "test").iterdir()):
        out[d.name] = [round(expert.analyse_with_bank(_open(p), bank).score, 2) for p in _images_in(d)]
    print(cat, bank.meta.get("pose"), f"thr={bank.calibration['threshold']:.2f}", out, flush=True)
