"""Train the builtin model's projector and LoRA deltas (CPU, seeded); see riad_agent/training/.

    python scripts/train_builtin.py --mvtec ../shared/data/mvtec_subset --out riad_agent/models/builtin/weights/riad-builtin-v1.safetensors

ELPV (``pip install elpv-dataset``, CC BY-NC-SA) and the MVTec folder are used for training only
through their train splits; the weights never contain images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from riad_agent.models.builtin.loading import WEIGHTS_PATH
from riad_agent.settings import load_settings
from riad_agent.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument(
        "--mvtec", default=None, help="MVTec AD-layout folder (its train/good images are used)"
    )
    parser.add_argument(
        "--config", default="{}", help="JSON overrides of TrainConfig, e.g. '{\"steps\": 10}'"
    )
    parser.add_argument(
        "--examples-cache", type=Path, default=None, help="folder keeping prepared evidence and cells"
    )
    args = parser.parse_args()
    overrides = json.loads(args.config)
    config = TrainConfig(mvtec_root=args.mvtec, **overrides)
    record = train(
        config,
        args.out,
        load_settings().model_cache_dir,
        log=lambda m: print(m, flush=True),
        examples_cache=args.examples_cache,
    )
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
