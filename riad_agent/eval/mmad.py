"""Run one configuration over MMAD and score it as MMAD does.

Every question is asked on its own (as in MMAD's scripts): the query image, 0 or 1 normal
templates, optionally the retrieved knowledge of the image's product, then the question. With
``latent=False`` the same :class:`LatentReasoner` runs with T=0 and no injection, so the only
difference between the two runs is the method. Answers are appended to a JSONL file as they come
(flush + fsync); a re-run skips every (image, question index) already there.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from riad_agent.errors import ImageNotFoundError, InvalidImageError, OutputWriteError, UnknownCategoryError
from riad_agent.eval.mmad_data import MmadItem, dataset_of, load_mmad, product_of
from riad_agent.eval.mmad_scoring import MmadScores, ScoredAnswer, parse_answer, score_answers
from riad_agent.evidence import reasoning_input
from riad_agent.models.base import VisionLanguageModel
from riad_agent.protocols import Expert, KnowledgeBase, Pose
from riad_agent.reasoning import LatentReasoner
from riad_agent.reasoning.config import config_for
from riad_agent.schemas import KnowledgeHit, MultipleChoiceQuestion

if TYPE_CHECKING:
    from riad_agent.eval.qa_exemplars import LeaveOneOutExemplars

MmadProgress = Callable[[int, int], None]
"""Called with (questions answered in this run, questions to answer in this run)."""

KNOWLEDGE_DATASETS = {
    "MVTec-AD": "mvtec",
    "DS-MVTec": "mvtec",
    "MVTec-LOCO": "mvtec_loco",
    "VisA": "visa",
    "ELPV": "elpv",
}
"""MMAD source dataset -> dataset name in the knowledge base (others resolve by product alone)."""


class MmadRunConfig(BaseModel):
    """One evaluated configuration."""

    model_config = ConfigDict(extra="forbid")

    shots: int = Field(default=1, ge=0, le=64, description="Normal templates shown (0-shot or k-shot).")
    templates: Literal["similar", "random"] = Field(
        default="similar", description="Template list of mmad.json the shots come from (first k)."
    )
    expert_shots: int | None = Field(
        default=None,
        ge=1,
        description="Templates (from the same list) the vision expert compares with; None = shots.",
    )
    knowledge: bool = False
    knowledge_k: int = Field(default=3, ge=1, le=20)
    latent: bool = True
    inject: bool | None = Field(default=None, description="Patch injection; None = the same as latent.")
    prior_weight: float = Field(default=0.5, ge=0, le=1, description="Expert prior weight in patch choice.")
    latent_steps: int = Field(default=10, ge=1, le=200, description="T when latent reasoning is on.")
    latent_tokens: int = Field(default=4, ge=1, le=64)
    rationale_tokens: int = Field(default=24, ge=1, le=512, description="Greedy tokens of the response.")
    answer_from: Literal["response", "reasoner"] = Field(
        default="response",
        description="'response': MMAD's rule on the generated text; 'reasoner': the reasoner's letter.",
    )
    sample: int | None = Field(default=None, ge=1, description="Random questions to ask; None = all.")
    seed: int = 0
    reverse_options: bool = Field(
        default=False, description="Ask with the options in reverse order (the correct letter follows them)."
    )
    debias: Literal["none", "cyclic", "dihedral"] = Field(
        default="dihedral", description="The reasoner's answer debiasing (LatentConfig.debias)."
    )
    follow_verdict: bool = Field(
        default=True,
        description="An answer may not contradict a confident expert score "
        "(LatentConfig.follow_confident_verdict, the shipped default); the ablation turns it off above "
        "its '+ confident verdict' row.",
    )
    exemplars: int = Field(
        default=0,
        ge=0,
        le=16,
        description="Labelled defect exemplars per type the reasoner is told about, drawn leave-one-out "
        "from the source folder (riad_agent.eval.qa_exemplars); 0 = none.",
    )

    @property
    def injects(self) -> bool:
        return self.latent if self.inject is None else self.inject and self.latent


class MmadAnswer(BaseModel):
    """One JSONL line: the question, the response and the parsed answer."""

    image: str
    question_index: int
    question_type: str
    question: str
    options: dict[str, str]
    correct_answer: str
    response: str
    gpt_answer: str
    reasoner_answer: str | None = None
    option_probabilities: dict[str, float] = Field(default_factory=dict)
    category: str | None = None
    knowledge_ids: list[str] = Field(default_factory=list)
    exemplar_type: str | None = None  # the type the leave-one-out exemplars clearly pointed to, if any
    elapsed_ms: float

    def scored(self) -> ScoredAnswer:
        return ScoredAnswer(
            image=self.image,
            question_type=self.question_type,
            correct_answer=self.correct_answer,
            gpt_answer=self.gpt_answer,
        )


class MmadRunResult(BaseModel):
    """What a run did and the scores over every answer in its JSONL."""

    config: MmadRunConfig
    model_id: str
    answers_path: str
    selected: int
    skipped: int
    answered: int
    scores: MmadScores


def build_mmad_reasoner(vlm: VisionLanguageModel, config: MmadRunConfig) -> LatentReasoner:
    """The reasoner of a configuration: T steps with injection, or T=0 without (plain decode)."""
    return LatentReasoner(
        vlm,
        config_for(
            vlm,
            steps=config.latent_steps if config.latent else 0,
            inject_patches=config.injects,
            prior_weight=config.prior_weight,
            latent_tokens=config.latent_tokens,
            rationale_tokens=config.rationale_tokens,
            debias=config.debias,
            follow_confident_verdict=config.follow_verdict,
        ),
    )


def select_questions(items: dict[str, MmadItem], sample: int | None, seed: int) -> list[tuple[str, int]]:
    """Every (image, question index), or a seeded random sample of them in file order."""
    pairs = [(image, index) for image, item in items.items() for index in range(len(item.conversation))]
    if sample is None or sample >= len(pairs):
        return pairs
    chosen = set(random.Random(seed).sample(range(len(pairs)), sample))
    return [pair for position, pair in enumerate(pairs) if position in chosen]


def read_answers(path: Path) -> list[MmadAnswer]:
    """The answers already in a JSONL file; a torn last line (killed run) is cut off the file."""
    if not path.is_file():
        return []
    answers: list[MmadAnswer] = []
    good_bytes = 0
    with path.open("rb") as handle:
        for raw in handle:
            try:
                answers.append(MmadAnswer.model_validate_json(raw))
            except ValidationError:
                break
            good_bytes += len(raw)
    if good_bytes < path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return answers


def _append(path: Path, answer: MmadAnswer) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(answer.model_dump_json() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise OutputWriteError(f"cannot append to {path}: {exc}") from exc


@lru_cache(maxsize=256)
def _open_template(root: Path, relative: str) -> Image.Image:
    """Templates repeat across questions (the expert's reference pool): decode each once."""
    return _open_image(root, relative)


def _open_image(root: Path, relative: str) -> Image.Image:
    path = root / relative
    if not path.is_file():
        raise ImageNotFoundError(f"MMAD image {relative!r} is missing under {root}; check --data")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise InvalidImageError(f"cannot decode {path}: {exc}") from exc


def knowledge_category(kb: KnowledgeBase, image: str) -> str | None:
    """The knowledge base's category of an MMAD image ('dataset/product', else the product) or None."""
    product = product_of(image)
    if product is None:
        return None
    prefix = KNOWLEDGE_DATASETS.get(dataset_of(image))
    names = [f"{prefix}/{product}", product] if prefix else [product]
    for name in names:
        try:
            return kb.resolve_category(name)
        except UnknownCategoryError:
            continue
    return None


def reversed_options(question: MultipleChoiceQuestion, correct: str) -> tuple[MultipleChoiceQuestion, str]:
    """The question with its options in reverse order, and the letter the correct option now has."""
    letters = list(question.options)
    texts = list(question.options.values())[::-1]
    flipped = question.model_copy(update={"options": dict(zip(letters, texts, strict=True))})
    if correct not in letters:
        return flipped, correct
    return flipped, letters[len(letters) - 1 - letters.index(correct)]


def answer_question(
    reasoner: LatentReasoner,
    root: Path,
    image: str,
    item: MmadItem,
    index: int,
    config: MmadRunConfig,
    knowledge: KnowledgeBase | None = None,
    expert: Expert | None = None,
    exemplars: LeaveOneOutExemplars | None = None,
) -> MmadAnswer:
    """Ask one question of one image and parse the answer (with ``config.exemplars``, ``exemplars``
    types the expert's strongest region by other labelled defects of the category)."""
    started = time.perf_counter()
    mmad_question = item.conversation[index]
    question = mmad_question.to_choice()
    correct = mmad_question.answer
    if config.reverse_options:
        question, correct = reversed_options(question, correct)
    query = _open_image(root, image)
    pool = item.similar_templates if config.templates == "similar" else item.random_templates
    templates = [_open_template(root, path) for path in pool[: config.shots]]
    references = [_open_template(root, path) for path in pool[: config.expert_shots or config.shots]]
    category: str | None = None
    pose: Pose | None = None
    hits: list[KnowledgeHit] = []
    if config.knowledge and knowledge is not None:
        category = knowledge_category(knowledge, image)
        if category is not None:
            hits = knowledge.search(question.render(), category, config.knowledge_k)
            pose = knowledge.pose(category)  # as an inspection naming the category: its entry's pose
    anomaly = expert.analyse(query, references, pose=pose) if expert is not None and references else None
    typed = None
    if config.exemplars and exemplars is not None and anomaly is not None:
        typed = exemplars.typing(image, query, anomaly)
    result = reasoner.reason(
        reasoning_input(
            query,
            question,
            templates=templates,
            knowledge=hits,
            expert=anomaly,
            category=category,
            latent_steps=config.latent_steps,
            latent_tokens=config.latent_tokens,
            inject_patches=config.injects,
            seed=config.seed,
            exemplars=typed[1] if typed else (),
            exemplar_type=typed[0].defect_type if typed else None,
        )
    )
    if config.answer_from == "reasoner" and result.answer is not None:
        parsed = result.answer
    else:
        parsed = parse_answer(result.text, question.options)
    return MmadAnswer(
        image=image,
        question_index=index,
        question_type=mmad_question.type,
        question=mmad_question.question,
        options=question.options,
        correct_answer=correct,
        response=result.text,
        gpt_answer=parsed,
        reasoner_answer=result.answer,
        option_probabilities=result.trace.option_probabilities,
        category=category,
        knowledge_ids=[hit.id for hit in hits],
        exemplar_type=typed[0].defect_type if typed else None,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
    )


def answers_file_name(model_id: str, config: MmadRunConfig) -> str:
    """A file stem naming the configuration, MMAD style: ``answers_1_shot_<model>[_knowledge][_latent]``."""
    model = Path(model_id.rstrip("/")).name or "model"
    parts = [f"answers_{config.shots}_shot_{model}"]
    if config.shots and config.templates == "random":
        parts.append("random")
    if config.knowledge:
        parts.append("knowledge")
    parts.append(f"latent{config.latent_steps}" if config.latent else "plain")
    return "_".join(parts)


def run_mmad(
    data_root: Path,
    reasoner: LatentReasoner,
    config: MmadRunConfig,
    answers_path: Path,
    knowledge: KnowledgeBase | None = None,
    expert: Expert | None = None,
    progress: MmadProgress | None = None,
    model_id: str | None = None,
    exemplars: LeaveOneOutExemplars | None = None,
) -> MmadRunResult:
    """Answer the selected questions not yet in ``answers_path``, then score the selected answers in it.

    ``model_id`` names the model in the result (default: the reasoner's).
    """
    items = load_mmad(data_root)
    selected = select_questions(items, config.sample, config.seed)
    try:
        answers_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create {answers_path.parent}: {exc}") from exc
    done = read_answers(answers_path)
    finished = {(answer.image, answer.question_index) for answer in done}
    pending = [pair for pair in selected if pair not in finished]
    if progress is not None:
        progress(0, len(pending))
    for count, (image, index) in enumerate(pending, start=1):
        answer = answer_question(
            reasoner, data_root, image, items[image], index, config, knowledge, expert, exemplars
        )
        _append(answers_path, answer)
        done.append(answer)
        if progress is not None:
            progress(count, len(pending))
    wanted = set(selected)
    scores = score_answers(a.scored() for a in done if (a.image, a.question_index) in wanted)
    return MmadRunResult(
        config=config,
        model_id=model_id or reasoner.model_id,
        answers_path=str(answers_path),
        selected=len(selected),
        skipped=len(selected) - len(pending),
        answered=len(pending),
        scores=scores,
    )


def scores_json(result: MmadRunResult) -> str:
    """The run result as indented JSON (NaN-free: empty cells are null)."""
    return json.dumps(result.model_dump(mode="json"), indent=2)
