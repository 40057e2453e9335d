"""Write a labelled set as an MMAD-layout folder (``mmad.json`` + images) that ``riad eval mmad`` reads.

Each image gets every question its labels allow (``QuestionMaker.questions``); its template lists
are the keys of its reference pool (the expert compares with them; the prompt shows ``shots`` of
them). Images are stored downscaled (longer side ``side``, PNG): the expert works at 256 px and the
builtin model at 224 px, and small files keep repeated runs fast. The folder is an evaluation
artefact outside the repository; it holds copies of licensed data (MVTec AD, ELPV: CC BY-NC-SA).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from riad_agent.errors import OutputWriteError
from riad_agent.question_sets.questions import QuestionMaker
from riad_agent.question_sets.sources import LabelledSet


def _store(load: Callable[[], Image.Image], path: Path, side: int) -> None:
    if path.is_file():
        return
    image = load()
    if max(image.size) > side:
        scale = side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))),
            Image.Resampling.BICUBIC,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def write_mmad_layout(data: LabelledSet, out: Path, seed: int = 0, side: int = 256) -> dict[str, int]:
    """Images, references and ``mmad.json`` under ``out``; returns counts (images, questions)."""
    maker = QuestionMaker()
    rng = random.Random(seed)
    index: dict[str, object] = {}
    questions = 0
    try:
        for references in data.pools.values():
            for key, load in references:
                _store(load, out / key, side)
        for item in data.images:
            _store(item.load, out / item.key, side)
            asked = maker.questions(item.label, rng)
            questions += len(asked)
            pool = [key for key, _ in data.pools[item.pool]]
            index[item.key] = {
                "conversation": [
                    {
                        "Question": q.question.text,
                        "Options": q.question.options,
                        "Answer": q.answer,
                        "type": q.subtask,
                    }
                    for q in asked
                ],
                "similar_templates": pool,
                "random_templates": pool,
                "mask_path": None,
            }
        (out / "mmad.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    except OSError as exc:
        raise OutputWriteError(f"cannot write the question set under {out}: {exc}") from exc
    return {"images": len(data.images), "questions": questions}
