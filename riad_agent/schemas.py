"""The contracts at every boundary: what goes into an inspection and what comes out.

``InspectionRequest`` and ``InspectionReport`` are what the graph, the tools, the CLI and the HTTP
services exchange. The smaller models (``Region``, ``KnowledgeCitation``, ``ReasoningTrace`` ...) are
their parts and are also what the components return.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from riad_agent.errors import InvalidRequestError, first_problem

SCHEMA_VERSION = "1"

Verdict = Literal["normal", "anomalous", "uncertain"]
AnswerSource = Literal["model", "exemplars", "verdict"]
"""Where an asked answer came from (``ReasoningTrace.answer_source``)."""

#: Scores within this distance of 0.5 are "uncertain" (the calibrated edge of normal).
UNCERTAIN_BAND = 0.05


def references_text(count: int) -> str:
    """What a verdict was compared with, as people read it: '1 normal reference', '4 normal references'."""
    return f"{count} normal reference{'' if count == 1 else 's'}"


def score_text(score: float) -> str:
    """A calibrated score as people read it: two decimals, more where two would round it across an
    edge of the uncertain band (an uncertain 0.548 printed "0.55", the first anomalous score)."""

    def side(value: float) -> int:
        return (value >= 0.5 + UNCERTAIN_BAND - 1e-12) - (value <= 0.5 - UNCERTAIN_BAND + 1e-12)

    for digits in (2, 3):
        text = f"{score:.{digits}f}"
        if side(float(text)) == side(score):
            return text
    return f"{score:.4f}"


ImageSource = Annotated[
    str | bytes,
    Field(
        description=(
            "The image: a file path, raw bytes, a base64 string or a data URI "
            "('data:image/png;base64,...'). URLs are refused unless the server enables them."
        )
    ),
]

#: What each ``degraded`` entry of a report means for the reader (unknown entries are shown as they are).
DEGRADED_MEANINGS: dict[str, str] = {
    "knowledge_unavailable": "the knowledge base could not be reached: no knowledge was used or cited",
    "no_knowledge_for_category": "the knowledge base knows nothing of this category: no knowledge was used",
    "no_references": "no normal reference images: no calibrated comparison, the verdict stays uncertain",
    "reasoner_unavailable": "the reasoner could not be built or reached: an expert-only report",
    "reasoner_timeout": "the reasoner did not answer in time: an expert-only report",
    "unknown_product": "the image matches no registered product: name its category, give normal references, "
    "or register it (riad product add)",
    "products_unavailable": "the product memory could not be opened: no stored references were used",
}

_LETTER = re.compile(r"^[A-Z]$")
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_\-]*(/[a-z0-9][a-z0-9_\-]*)?$")


def _path_to_str(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")


class MultipleChoiceQuestion(_Strict):
    """A question with lettered options, as in MMAD: ``{"A": "Yes.", "B": "No."}``."""

    text: str = Field(min_length=1, max_length=4000, description="The question itself.")
    options: dict[str, str] = Field(
        description="Options keyed by capital letter, in order: {'A': '...', 'B': '...'}."
    )

    @field_validator("options")
    @classmethod
    def _lettered(cls, options: dict[str, str]) -> dict[str, str]:
        if not 2 <= len(options) <= 26:
            raise ValueError("a question needs between 2 and 26 options")
        letters = list(options)
        for letter in letters:
            if not _LETTER.match(letter):
                raise ValueError(f"option key {letter!r} is not a single capital letter A-Z")
        expected = [chr(ord("A") + i) for i in range(len(letters))]
        if sorted(letters) != expected:
            raise ValueError(f"option letters must be {', '.join(expected)} (got {', '.join(letters)})")
        for letter, text in options.items():
            if not text.strip():
                raise ValueError(f"option {letter} is empty")
        return {letter: options[letter] for letter in expected}

    def render(self) -> str:
        """The question and its options as prompt text, one option per line."""
        lines = [self.text.strip()]
        lines += [f"{letter}. {text.strip()}" for letter, text in self.options.items()]
        return "\n".join(lines)


class InspectionOptions(_Strict):
    """Knobs of one inspection; the defaults are the method's."""

    latent_steps: int = Field(default=10, ge=0, le=200, description="Latent optimisation iterations T.")
    latent_tokens: int = Field(default=4, ge=1, le=64, description="Number of latent think tokens L.")
    inject_patches: bool = Field(default=True, description="Dynamic visual injection on or off.")
    use_knowledge: bool = Field(default=True, description="Retrieve category knowledge into the prompt.")
    use_reasoner: bool = Field(default=True, description="Run the latent reasoner; off = expert only.")
    reasoner_when: Literal["needed", "always"] = Field(
        default="needed",
        description="With use_reasoner: 'needed' runs the latent reasoner only when a question is asked or "
        "the vision expert's verdict is not clear (no references, a score near the threshold, references "
        "that disagree); 'always' runs it for every image.",
    )
    knowledge_k: int = Field(default=4, ge=1, le=32, description="Knowledge entries to retrieve.")
    seed: int = Field(default=0, ge=0, description="Seed for every random choice: same seed, same report.")
    return_heatmap: bool = Field(default=False, description="Include the heatmap overlay PNG.")


class InspectionRequest(_Strict):
    """One image to inspect, with what is known about it."""

    image: ImageSource
    category: str | None = Field(
        default=None,
        description="Product category, e.g. 'hazelnut' or 'mvtec/hazelnut'. Guessed when absent.",
    )
    references: list[ImageSource] = Field(
        default_factory=list,
        max_length=200,
        description="Normal reference images of the same category (few-shot templates).",
    )
    question: MultipleChoiceQuestion | None = Field(
        default=None, description="Optional multiple-choice question to answer about the image."
    )
    options: InspectionOptions = Field(default_factory=InspectionOptions)

    @field_validator("image", mode="before")
    @classmethod
    def _image_path(cls, value: Any) -> Any:
        return _path_to_str(value)

    @field_validator("references", mode="before")
    @classmethod
    def _reference_paths(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [_path_to_str(item) for item in value]
        return value

    @field_validator("category")
    @classmethod
    def _category_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not value:
            return None
        if not _CATEGORY.match(value):
            raise ValueError(
                f"category {value!r} must look like 'hazelnut' or 'mvtec/hazelnut' "
                "(lower-case letters, digits, '_' and '-')"
            )
        return value

    @model_validator(mode="after")
    def _image_not_empty(self) -> InspectionRequest:
        if len(self.image) == 0:
            raise ValueError("image is empty")
        return self


ModelT = TypeVar("ModelT", bound=BaseModel)


def validated(model: type[ModelT], value: ModelT | dict[str, Any], what: str) -> ModelT:
    """``value`` as a ``model`` (a dict, e.g. JSON, is validated); typed error naming the first bad field."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        where, problem = first_problem(exc, what)
        raise InvalidRequestError(f"invalid {what} field {where}: {problem}") from exc


def parse_request(value: InspectionRequest | dict[str, Any]) -> InspectionRequest:
    """Validate a request given as a dict (JSON); typed error naming the first bad field."""
    return validated(InspectionRequest, value, "request")


class Region(_Strict):
    """An anomalous region as a pixel box ``[x0, y0, x1, y1)`` in the original image."""

    x0: int = Field(ge=0)
    y0: int = Field(ge=0)
    x1: int = Field(ge=0)
    y1: int = Field(ge=0)
    score: float = Field(
        ge=0.0,
        le=1.0,
        description="Calibrated score of the region's peak; the image's score for the strongest place "
        "shown when no pixel passes the pixel threshold.",
    )
    area: int = Field(ge=0, description="Pixels above threshold inside the box.")

    @model_validator(mode="after")
    def _ordered(self) -> Region:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            raise ValueError("a region needs x1 > x0 and y1 > y0")
        return self


#: Words for an anomalous region (see riad_agent/expert/describe.py, which measures them).
RegionShape = Literal["elongated", "compact", "spread"]
RegionContrast = Literal["darker", "brighter", "colour shift", "little contrast"]
RegionPosition = Literal["centre", "edge", "inner edge", "inside"]
ColourShift = Literal["red", "green", "yellow", "blue", "grey"]


class DescribedRegion(BaseModel):
    """One region in words and the figures behind them (box in image pixels, ``[x0, y0, x1, y1)``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: tuple[int, int, int, int]
    score: float
    area_px: int = Field(ge=0, description="Pixels of the region (the map's core, or what differs in it).")
    area_pct_of_part: float = Field(ge=0.0, description="area_px as a percentage of the part's area.")
    shape: RegionShape
    blobs: int = Field(ge=1, description="Separate pieces the region's pixels form.")
    axis_ratio: float = Field(description="Square root of the ratio of the principal second moments.")
    length_over_width: float = Field(description="Area over squared thickness: ~1 for a disc.")
    fill: float = Field(description="Share of the pixels' bounding box the region fills.")
    contrast: RegionContrast
    lightness_delta: float = Field(
        description="Median L* of the region minus that of what it is compared with."
    )
    colour_delta: float = Field(
        description="Distance of the median a*b* of the region from the comparison's."
    )
    hue: ColourShift | None = Field(
        default=None, description="Which way the colour shifted, for 'colour shift'."
    )
    compared_with: Literal["surroundings", "reference"]
    position: RegionPosition
    side: str | None = Field(default=None, description="'top', 'bottom left', ...; None at the centre.")
    whole_image: bool = Field(default=False, description="True when the part is the whole image (a texture).")

    def sentence(self) -> str:
        """This region as a clause, e.g. '412 px (1.8 % of the part), elongated, darker than ...'.

        When the pixels that differ fill under a quarter of the region's box (a thin crack inside the
        place the expert marked), the box is named too, so '9 px' does not read as the box's size.
        """
        noun = "surface" if self.whole_image else "part"
        width, height = self.box[2] - self.box[0], self.box[3] - self.box[1]
        within = f" within a {width} x {height} px box" if width * height >= 4 * max(self.area_px, 1) else ""
        return ", ".join(
            [
                f"{self.area_px} px ({_percent(self.area_pct_of_part)} % of the {noun}){within}",
                self.shape,
                self.contrast_words(),
                self.position_words(),
            ]
        )

    def contrast_words(self) -> str:
        noun = "surface" if self.whole_image else "part"
        against = (
            "the same place on the reference"
            if self.compared_with == "reference"
            else f"the {noun} around it"
        )
        if self.contrast == "little contrast":
            return f"with little contrast to {against}"
        if self.contrast == "colour shift":
            towards = f" towards {self.hue}" if self.hue else ""
            return f"shifted in colour{towards} against {against}"
        return f"{self.contrast} than {against}"

    def position_words(self) -> str:
        noun = "image" if self.whole_image else "part"
        side = self.side.replace(" ", "-") if self.side else None
        if self.position == "centre":
            return f"in the centre of the {noun}"
        if self.position == "edge":
            return f"near the {side} edge of the {noun}" if side else f"near the edge of the {noun}"
        if self.position == "inner edge":
            where = f"on the {side} of the part" if side else "in the centre of the part"
            return f"at the edge of an opening, {where}"
        return f"on the {side} of the {noun}, away from its edges" if side else f"inside the {noun}"


class RegionDescription(BaseModel):
    """Every region described, strongest first, and the part they were measured against."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    regions: list[DescribedRegion]
    part_area_px: int = Field(ge=0)
    whole_image: bool = Field(description="True when no part stood out from a plain background.")

    @property
    def strongest(self) -> DescribedRegion | None:
        return self.regions[0] if self.regions else None

    def sentence(self) -> str:
        """Plain sentences about all regions; the strongest in full, the others briefly."""
        if not self.regions:
            return "No anomalous region."
        top = self.regions[0]
        if len(self.regions) == 1:
            return f"One region, {top.sentence()}."
        noun = "surface" if self.whole_image else "part"
        total = sum(r.area_px for r in self.regions)
        pct = 100.0 * total / max(self.part_area_px, 1)
        head = f"{len(self.regions)} regions, {total} px in all ({_percent(pct)} % of the {noun}); "
        others = "; ".join(
            f"{r.area_px} px, {r.shape}, {r.contrast_words()}, {r.position_words()}" for r in self.regions[1:]
        )
        return f"{head}the strongest: {top.sentence()}. The others: {others}."

    @property
    def text(self) -> str:
        return self.sentence()

    def rescaled(self, factor_x: float, factor_y: float) -> RegionDescription:
        """The same description for an image ``factor_x`` x ``factor_y`` times the size it was made on.

        Pixel counts scale with the area and boxes as :func:`riad_agent.explain.scale_regions` scales
        regions (a working copy's findings told in the original image's pixels); shares, shapes and
        places do not change.
        """
        area = factor_x * factor_y
        regions = []
        for region in self.regions:
            x0, y0, x1, y1 = region.box
            nx0, ny0 = int(x0 * factor_x), int(y0 * factor_y)
            box = (nx0, ny0, max(nx0 + 1, round(x1 * factor_x)), max(ny0 + 1, round(y1 * factor_y)))
            regions.append(region.model_copy(update={"box": box, "area_px": round(region.area_px * area)}))
        return self.model_copy(update={"regions": regions, "part_area_px": round(self.part_area_px * area)})


def _percent(value: float) -> str:
    """A share in percent for a sentence: one decimal, two under 0.1, and never a bare zero."""
    if value >= 0.1:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.005 else "under 0.01"


class KnowledgeHit(_Strict):
    """One knowledge entry found by retrieval, with its score (higher is closer)."""

    id: str = Field(description="Entry id, e.g. 'mvtec/hazelnut/crack'.")
    score: float
    dataset: str
    category: str = Field(description="Full category name, 'dataset/category'.")
    kind: Literal["normal", "defect"]
    defect_type: str | None = None
    title: str
    text: str
    source: str = ""


class CandidateType(_Strict):
    """A defect type the knowledge suggests for the strongest region: a lean for an operator, not a verdict.

    Ranked by how well the entry's visual cues match the region's words (``riad_agent/knowledge/cues.py``).
    """

    id: str = Field(description="Knowledge entry id, e.g. 'mvtec/hazelnut/crack'.")
    title: str
    defect_type: str
    cue_match: float = Field(
        ge=-0.5,
        le=1.0,
        description="Agreement of the entry's cues with the region: 1 all named agree, 0 silent.",
    )
    agreed: list[str] = Field(default_factory=list, description="The region's attributes the entry names.")
    clashed: list[str] = Field(
        default_factory=list, description="The region's attributes where the entry names only others."
    )


class KnowledgeCitation(_Strict):
    """A knowledge entry the report relied on, for citation."""

    id: str
    title: str
    category: str
    kind: Literal["normal", "defect"]
    defect_type: str | None = None
    score: float


class PatchRef(_Strict):
    """A query-image patch injected into the reasoning, with its grid cell and pixel box."""

    index: int = Field(ge=0)
    row: int = Field(ge=0)
    col: int = Field(ge=0)
    box: tuple[int, int, int, int]
    score: float


class IterationTrace(_Strict):
    """One iteration of the latent loop."""

    step: int = Field(ge=0)
    reward: float
    entropy: float
    sigma: float = Field(ge=0.0)
    tried: list[PatchRef] = Field(
        default_factory=list,
        validation_alias=AliasChoices("tried", "injected"),
        description="The candidate patch set evaluated this iteration (empty: none pending). "
        "Traces written before the rename call it 'injected'.",
    )
    kept: list[PatchRef] = Field(
        default_factory=list, description="The patches in the current row after this iteration."
    )
    accepted: bool = Field(description="Whether this iteration's candidate replaced the current patch set.")
    elapsed_ms: float = Field(ge=0.0)

    @property
    def injected(self) -> list[PatchRef]:
        """Old name of :attr:`tried` (read-only)."""
        return self.tried


LoopStop = Literal["steps", "threshold", "plateau"]
"""Why the latent loop ended: all T iterations ran, the best reward reached the threshold, or it plateaued."""


class ReasoningTrace(_Strict):
    """What the latent reasoner did: rewards per iteration and the patches it kept."""

    model_id: str
    reward_kind: str
    latent_tokens: int
    initial_reward: float
    final_reward: float
    iterations: list[IterationTrace] = Field(default_factory=list)
    kept: list[PatchRef] = Field(
        default_factory=list,
        validation_alias=AliasChoices("kept", "injected"),
        description="Patches in the decode (the best row's). Traces written before the rename call it 'injected'.",
    )
    option_probabilities: dict[str, float] = Field(default_factory=dict)
    rationale: str = Field(
        default="",
        description="The answer letter and the text decoded after it (the builtin model decodes the letter "
        "only: its rationales just repeated an option's text).",
    )
    answer_source: AnswerSource = Field(
        default="model",
        description="'exemplars': the option naming the type the product's labelled exemplars clearly "
        "point to was taken (LatentConfig.follow_exemplars); 'verdict': the model's choice contradicted "
        "a confident expert score and the best option that does not was taken "
        "(LatentConfig.follow_confident_verdict); 'model': the model's own choice.",
    )
    model_answer: str | None = Field(
        default=None,
        description="The model's own letter when the answer came from the exemplars or the verdict.",
    )
    stopped: LoopStop = Field(
        default="steps",
        description="Why the loop ended: all its iterations ran, the best reward reached the threshold, "
        "or the reward plateaued (LatentConfig.plateau_patience).",
    )
    precision: str | None = Field(
        default=None,
        description="The language model's precision: 'float32', 'bfloat16', 'float16' or 'int8' (the "
        "builtin's default on x86 CPUs without native bf16, or RIAD_DTYPE=int8); None in older traces.",
    )

    @property
    def injected(self) -> list[PatchRef]:
        """Old name of :attr:`kept` (read-only)."""
        return self.kept

    @property
    def tried(self) -> list[PatchRef]:
        """Every distinct patch of the candidate sets evaluated, in the order first tried."""
        seen: dict[int, PatchRef] = {}
        for iteration in self.iterations:
            for ref in iteration.tried:
                seen.setdefault(ref.index, ref)
        return list(seen.values())


class InspectionReport(_Strict):
    """The explainable verdict on one image."""

    schema_version: str = SCHEMA_VERSION
    verdict: Verdict
    anomaly_score: float = Field(
        ge=0.0, le=1.0, description="Calibrated: 0.5 is the edge of normal for every category."
    )
    category: str | None = None
    category_guessed: bool = False
    category_similarity: float | None = Field(
        default=None, description="When the product was recognised from the image: its similarity (0-1)."
    )
    answer: str | None = Field(default=None, description="Answer letter when a question was asked.")
    answer_text: str | None = None
    answer_agrees_with_verdict: bool | None = Field(
        default=None,
        description="False when the answer says the part is otherwise than the verdict (e.g. 'No defect' on "
        "an anomalous part): the verdict follows the calibrated expert and the explanation says so; None "
        "when the answer says nothing of the part, nothing was asked, or the verdict is uncertain.",
    )
    defect_type: str | None = Field(
        default=None,
        description="What the defect is, when the evidence is clear; never on a normal verdict, and on an "
        "uncertain one what the strongest place looks like if it is a defect.",
    )
    defect_description: str | None = None
    regions: list[Region] = Field(default_factory=list)
    heatmap_png: bytes | None = Field(default=None, description="Heatmap overlay (base64 in JSON).")
    explanation: str = ""
    knowledge: list[KnowledgeCitation] = Field(default_factory=list)
    candidate_types: list[CandidateType] = Field(
        default_factory=list,
        description="When no type is stated on a flagged part: the category's defect entries whose visual cues "
        "best match the strongest region (low confidence, never defect_type).",
    )
    trace: ReasoningTrace | None = None
    timings_ms: dict[str, float] = Field(default_factory=dict)
    models: dict[str, str] = Field(
        default_factory=dict,
        description="What ran: expert, reasoner, and the precision the reasoner ran in (reasoner_precision).",
    )
    degraded: list[str] = Field(
        default_factory=list,
        description="Why parts were skipped, e.g. 'reasoner_unavailable', 'no_references'.",
    )
    image_size: tuple[int, int] = Field(description="(width, height) of the inspected image.")
    references: int = Field(
        default=0,
        ge=0,
        description="How many normal references the expert compared the image with (the request's, or a "
        "registered product's stored ones); 0 when there were none.",
    )
    pose: str | None = Field(
        default=None,
        description="The pose the expert assumed and what said so: 'free (knowledge)', 'fixed (references)' "
        "(inferred from their spread), 'fixed (registered product)', 'free (configuration)'.",
    )

    @field_validator("answer")
    @classmethod
    def _answer_letter(cls, value: str | None) -> str | None:
        if value is not None and not _LETTER.match(value):
            raise ValueError("answer must be one capital letter")
        return value

    def summary(self) -> str:
        """One line for humans and chat models: verdict, score, defect and where."""
        parts = [f"{self.verdict} (anomaly score {score_text(self.anomaly_score)})"]
        if self.category:
            guessed = ""
            if self.category_guessed:
                similarity = (
                    f", similarity {self.category_similarity:.2f}" if self.category_similarity else ""
                )
                guessed = f" (guessed{similarity})"
            parts.insert(0, f"[{self.category}{guessed}]")
        if self.defect_type and self.verdict == "uncertain":
            parts.append(f"if defective, it looks like: {self.defect_type}")  # not a finding
        elif self.defect_type:
            parts.append(f"defect: {self.defect_type}")
        if self.regions:
            top = max(self.regions, key=lambda r: r.score)
            parts.append(f"at x={top.x0}-{top.x1}, y={top.y0}-{top.y1}")
        if self.answer:
            parts.append(f"answer: {self.answer}{self.answer_caveat()}")
        if self.degraded:
            parts.append(f"degraded: {', '.join(self.degraded)}")
        return "; ".join(parts)

    def answer_caveat(self) -> str:
        """' (unlike the verdict, which follows the expert)' after an answer that contradicts the verdict;
        ' (the model leaned to D, which the expert's confident score rules out)' after one the verdict chose."""
        if self.answer_agrees_with_verdict is False:
            return " (unlike the verdict, which follows the expert)"
        if self.trace is not None and self.trace.answer_source == "verdict" and self.trace.model_answer:
            return f" (the model leaned to {self.trace.model_answer}, which the expert's confident score rules out)"
        return ""

    def degradation_notes(self) -> list[str]:
        """One line per ``degraded`` entry, each saying what was skipped and what that means."""
        return [
            f"degraded: {entry}: {DEGRADED_MEANINGS.get(entry, 'part of the inspection was skipped')}"
            for entry in self.degraded
        ]
