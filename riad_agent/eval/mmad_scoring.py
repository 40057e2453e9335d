"""MMAD's scoring rules, rewritten: answer parsing, balanced detection accuracy, the result table.

* The answer is the *last* standalone letter A-E of the response; when there is none, the option
  whose text is closest to the response (``difflib``, no cutoff); otherwise the raw response.
* Records whose correct or parsed answer is not one of A-E are left out (as MMAD does).
* Per source dataset and subtask: accuracy in percent. 'Anomaly Detection' is the balanced
  accuracy: the mean of the accuracy on normal images (path contains 'good') and on anomalous ones.
* 'Average' (column) = mean over the subtasks of a dataset; the 'Average' row = mean over the
  datasets of every column, so the overall figure is the mean over datasets of the per-dataset mean
  over subtasks. Recall, Precision and F1 of the detection question (anomalous = positive) follow.

Two deliberate differences, both only possible on a sample: a subtask with no question in a
dataset is left empty and skipped in the means, where MMAD's script would count it as 0; and the
balanced detection accuracy of a dataset whose sample holds only normal (or only anomalous) images
is that class's accuracy, where MMAD's would average it with 0.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from riad_agent.errors import OutputWriteError
from riad_agent.eval.mmad_data import SUBTASKS, dataset_of, is_normal_image, normalise_type

VALID_LETTERS = ("A", "B", "C", "D", "E")
DETECTION = "Anomaly Detection"
EXTRA_COLUMNS = ("Recall", "Precision", "F1")
COLUMNS: tuple[str, ...] = (*SUBTASKS, "Average", *EXTRA_COLUMNS)
_LETTER = re.compile(r"\b([A-E])\b")


def parse_answer(response: str, options: Mapping[str, str] | None = None) -> str:
    """The answer letter of a response, by MMAD's rule (the raw response when nothing matches)."""
    letters = _LETTER.findall(response)
    if letters:
        return str(letters[-1])
    if options:
        values = list(options.values())
        closest = difflib.get_close_matches(response, values, n=1, cutoff=0.0)
        if closest:
            for key, value in options.items():
                if value == closest[0]:
                    return key
    return response


class ScoredAnswer(BaseModel):
    """What the scorer needs of one answered question."""

    image: str
    question_type: str
    correct_answer: str
    gpt_answer: str


@dataclass
class _Tally:
    total: int = 0
    correct: int = 0

    def add(self, hit: bool) -> None:
        self.total += 1
        self.correct += int(hit)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


class MmadScores(BaseModel):
    """The result table: one row per dataset (first-seen order) and the 'Average' row, in percent."""

    rows: dict[str, dict[str, float | None]] = Field(description="row name -> column -> value.")
    counted: int = Field(description="Answers scored.")
    dropped: int = Field(description="Answers left out (correct or parsed answer not in A-E).")

    @property
    def average(self) -> float | None:
        """The headline figure: the 'Average' row's 'Average' column."""
        return self.rows["Average"]["Average"]


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def score_answers(answers: Iterable[ScoredAnswer]) -> MmadScores:
    """Score answered questions exactly as MMAD's summary does (see the module docstring)."""
    per_type: dict[str, dict[str, _Tally]] = {}
    normal: dict[str, _Tally] = {}
    abnormal: dict[str, _Tally] = {}
    counted = dropped = 0
    for answer in answers:
        if answer.correct_answer not in VALID_LETTERS or answer.gpt_answer not in VALID_LETTERS:
            dropped += 1
            continue
        counted += 1
        dataset = dataset_of(answer.image)
        subtask = normalise_type(answer.question_type)
        hit = answer.correct_answer == answer.gpt_answer
        per_type.setdefault(dataset, {}).setdefault(subtask, _Tally()).add(hit)
        normal.setdefault(dataset, _Tally())
        abnormal.setdefault(dataset, _Tally())
        if subtask == DETECTION:
            (normal if is_normal_image(answer.image) else abnormal)[dataset].add(hit)
    rows: dict[str, dict[str, float | None]] = {}
    for dataset, tallies in per_type.items():
        row: dict[str, float | None] = {}
        for subtask in SUBTASKS:
            tally = tallies.get(subtask)
            row[subtask] = tally.accuracy * 100.0 if tally is not None else None
        if DETECTION in tallies:
            asked = [t.accuracy for t in (normal[dataset], abnormal[dataset]) if t.total]
            row[DETECTION] = sum(asked) / len(asked) * 100.0
        row["Average"] = _mean(row[s] for s in SUBTASKS)
        row.update(_detection_extras(normal[dataset], abnormal[dataset], DETECTION in tallies))
        rows[dataset] = row
    rows["Average"] = {column: _mean(row[column] for row in rows.values()) for column in COLUMNS}
    return MmadScores(rows=rows, counted=counted, dropped=dropped)


def _detection_extras(normal: _Tally, abnormal: _Tally, present: bool) -> dict[str, float | None]:
    if not present:
        return {"Recall": None, "Precision": None, "F1": None}
    tp = abnormal.correct
    fp = normal.total - normal.correct
    fn = abnormal.total - abnormal.correct
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"Recall": recall * 100.0, "Precision": precision * 100.0, "F1": f1 * 100.0}


def write_scores_csv(scores: MmadScores, path: Path) -> Path:
    """Write the table with the columns of MMAD's published ``*_accuracy.csv`` files."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["", *COLUMNS])
            for name, row in scores.rows.items():
                writer.writerow([name, *("" if row[c] is None else repr(row[c]) for c in COLUMNS)])
    except OSError as exc:
        raise OutputWriteError(f"cannot write {path}: {exc}") from exc
    return path
