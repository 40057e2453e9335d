"""Does the region description in the retrieval query rank the right defect entry first? (issue 18)

    HF_HUB_OFFLINE=1 python benchmarks/knowledge_typing.py --data LAYOUT [--shots 4]

For every labelled defect of an MVTec-layout folder of *generated* products (the shipped knowledge
has entries for them), the expert runs against ``shots`` normal train images, and the knowledge base
is searched within the product's category with the graph's query, without and with the region
description. Printed: how often the top defect entry (and any of the top 2) is the true type.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image

from riad_agent.errors import UnknownCategoryError
from riad_agent.evidence import ExpertFindings
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.knowledge import open_knowledge_base
from riad_agent.knowledge.query import build_retrieval_query
from riad_agent.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--shots", type=int, default=4)
    args = parser.parse_args()
    kb = open_knowledge_base(Settings(data_dir=Path(tempfile.mkdtemp()) / "data"))
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    counts = {"without": [0, 0], "with": [0, 0]}
    total = 0
    for folder in sorted(p for p in args.data.iterdir() if (p / "test").is_dir()):
        try:
            category = kb.resolve_category(f"synthetic/{folder.name}")
        except UnknownCategoryError:
            continue  # no knowledge entries for this product
        refs = [
            Image.open(p).convert("RGB") for p in sorted((folder / "train/good").glob("*.png"))[: args.shots]
        ]
        for image_path in sorted((folder / "test").glob("*/*.png")):
            truth = image_path.parent.name
            if truth == "good":
                continue
            image = Image.open(image_path).convert("RGB")
            findings = ExpertFindings.of(expert.analyse(image, refs), heatmap=False)
            if findings.score <= 0.45:
                continue  # not flagged: the report would say normal, no type
            total += 1
            sentence = findings.description.sentence() if findings.description else None
            for name, words in (("without", None), ("with", sentence)):
                query = build_retrieval_query(
                    category=category,
                    regions=findings.regions,
                    image_size=image.size,
                    anomaly_score=findings.score,
                    description=words,
                )
                kinds = [hit.defect_type for hit in kb.search(query, category, 8) if hit.kind == "defect"]
                counts[name][0] += bool(kinds) and kinds[0] == truth
                counts[name][1] += truth in kinds[:2]
    print(
        json.dumps(
            {
                "flagged_defects": total,
                **{
                    f"{name}_description": {
                        "top1": round(c[0] / max(total, 1), 3),
                        "top2": round(c[1] / max(total, 1), 3),
                    }
                    for name, c in counts.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
