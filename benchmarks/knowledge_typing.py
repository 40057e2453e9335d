"""Which defect entry do the report's candidate types put first? (issue 18)

    HF_HUB_OFFLINE=1 python benchmarks/knowledge_typing.py --data LAYOUT [--shots 4] [--prefix synthetic/]

For every labelled defect of an MVTec-layout folder (``--prefix`` names the knowledge dataset of its
folders: the shipped knowledge needs entries for them), the expert runs against ``shots`` normal
train images; a flagged defect is typed three ways: the retrieval's order without and with the region
description in the query (what the report named before), and the category's defect entries ranked by
how well their cues match the strongest region (``riad_agent/knowledge/cues.py``, what the graph
does now). Printed: how often the first candidate (and any of the first 2) is the true type.
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
from riad_agent.knowledge.cues import CANDIDATE_POOL, rank_by_cues
from riad_agent.knowledge.query import build_retrieval_query
from riad_agent.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--prefix", default="synthetic/", help="knowledge dataset of the folders")
    args = parser.parse_args()
    kb = open_knowledge_base(Settings(data_dir=Path(tempfile.mkdtemp()) / "data"))
    expert = PatchCoreExpert(ExpertConfig(heatmap=False))
    counts = {"without": [0, 0], "with": [0, 0], "cues": [0, 0]}
    total = 0
    for folder in sorted(p for p in args.data.iterdir() if (p / "test").is_dir()):
        try:
            category = kb.resolve_category(f"{args.prefix}{folder.name}")
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
            strongest = findings.description.strongest if findings.description else None
            for name, words in (("without", None), ("with", sentence)):
                query = build_retrieval_query(
                    category=category,
                    regions=findings.regions,
                    image_size=image.size,
                    anomaly_score=findings.score,
                    description=words,
                )
                pool = kb.search(query, category, CANDIDATE_POOL)
                kinds = [hit.defect_type for hit in pool if hit.kind == "defect"]
                counts[name][0] += bool(kinds) and kinds[0] == truth
                counts[name][1] += truth in kinds[:2]
                if name == "with":  # the graph's query, the category's entries ranked by their cues
                    ranked = [candidate.defect_type for candidate in rank_by_cues(pool, strongest)]
                    counts["cues"][0] += bool(ranked) and ranked[0] == truth
                    counts["cues"][1] += truth in ranked[:2]
    print(
        json.dumps(
            {
                "flagged_defects": total,
                **{
                    ("ranked_by_cues" if name == "cues" else f"{name}_description"): {
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
