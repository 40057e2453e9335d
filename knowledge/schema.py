"""The knowledge file format (one YAML file per category) and the entries derived from it.

A category file describes what normal looks like and every defect type. Each file yields one
``normal`` entry and one entry per defect, with ids ``<dataset>/<category>/normal`` and
``<dataset>/<category>/<type>``. ``text`` is the prompt-ready prose a reasoner reads;
``search_text`` is what the dense and sparse indexes see (the discriminative fields first, so
the embedder's token limit cuts the least useful words).
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9_]*$"

DATASET_TITLES: dict[str, str] = {
    "mvtec": "MVTec AD",
    "visa": "VisA",
    "mvtec_loco": "MVTec LOCO AD",
    "elpv": "ELPV solar cells",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NormalSpec(_Strict):
    """What a defect-free sample looks like and how much it may vary."""

    description: str = Field(min_length=1)
    acceptable_variation: str = Field(min_length=1)


class DefectSpec(_Strict):
    """One defect type of a category."""

    type: str = Field(pattern=NAME_PATTERN)
    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    visual_cues: str = Field(min_length=1)
    typical_location: str = Field(min_length=1)
    distinguish_from_normal: str = Field(min_length=1)
    severity: Literal["low", "medium", "high"]
    likely_cause: str = Field(min_length=1)
    anomaly_class: Literal["structural", "logical"]


class CategoryFile(_Strict):
    """One knowledge YAML file: a category's normal appearance and its defect types."""

    dataset: str = Field(pattern=NAME_PATTERN)
    category: str = Field(pattern=NAME_PATTERN)
    display_name: str = Field(min_length=1)
    kind: Literal["object", "texture"]
    pose: Literal["free", "fixed"] | None = Field(
        default=None,
        description=(
            "How normal parts lie: 'fixed' (a fixtured line; a turned or shifted part is a defect) or "
            "'free' (any rotation is normal). Absent: the vision expert infers it from the references."
        ),
    )
    normal: NormalSpec
    defects: list[DefectSpec] = Field(default_factory=list)

    @field_validator("defects")
    @classmethod
    def _types_unique(cls, defects: list[DefectSpec]) -> list[DefectSpec]:
        for defect in defects:
            if defect.type == "normal":
                raise ValueError("defect type 'normal' is reserved for the normal entry")
        return defects

    @property
    def key(self) -> str:
        """Canonical category name, ``dataset/category``."""
        return f"{self.dataset}/{self.category}"


class KnowledgeEntry(_Strict):
    """One retrievable unit: a category's normal appearance or one of its defect types."""

    id: str = Field(
        min_length=3, description="'<dataset>/<category>/normal' or '<dataset>/<category>/<type>'."
    )
    dataset: str = Field(pattern=NAME_PATTERN)
    category: str = Field(pattern=NAME_PATTERN, description="Short category name, e.g. 'hazelnut'.")
    kind: Literal["normal", "defect"]
    defect_type: str | None = None
    title: str = Field(min_length=1)
    text: str = Field(min_length=1, description="Prompt-ready prose.")
    search_text: str = Field(default="", description="What the indexes see; defaults to text.")
    source: str = Field(default="", description="File the entry came from, relative to its scope.")
    content_hash: str = Field(default="", description="Hash of everything but source; filled in when empty.")

    def model_post_init(self, __context: object) -> None:
        if not self.search_text:
            self.search_text = self.text
        if not self.content_hash:
            self.content_hash = self.compute_hash()

    @property
    def category_key(self) -> str:
        """Canonical category name, ``dataset/category``."""
        return f"{self.dataset}/{self.category}"

    def compute_hash(self) -> str:
        """Stable hash of the entry's content (source and hash excluded)."""
        content = self.model_dump(exclude={"source", "content_hash"})
        blob = json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:32]


def dataset_title(dataset: str) -> str:
    """Human title of a dataset key ('mvtec' -> 'MVTec AD')."""
    return DATASET_TITLES.get(dataset, dataset.replace("_", " "))


def normal_entry(spec: CategoryFile, source: str) -> KnowledgeEntry:
    """The entry describing the category's normal appearance."""
    title = f"{spec.display_name}: normal appearance"
    text = (
        f"{spec.display_name} ({dataset_title(spec.dataset)}, {spec.kind}) - normal, defect-free appearance. "
        f"{spec.normal.description} Acceptable variation that is not a defect: "
        f"{spec.normal.acceptable_variation}"
    )
    defect_names = ", ".join(d.name.lower() for d in spec.defects)
    search_text = (
        f"{spec.display_name} normal good defect-free. "
        f"{spec.normal.description} {spec.normal.acceptable_variation}"
    )
    if defect_names:
        text += f" Known defect types: {defect_names}."
    return KnowledgeEntry(
        id=f"{spec.key}/normal",
        dataset=spec.dataset,
        category=spec.category,
        kind="normal",
        title=title,
        text=text,
        search_text=search_text,
        source=source,
    )


def defect_entry(spec: CategoryFile, defect: DefectSpec, source: str) -> KnowledgeEntry:
    """The entry describing one defect type of the category."""
    aliases = ", ".join(defect.aliases)
    also = f" Also called: {aliases}." if aliases else ""
    text = (
        f"{spec.display_name} - defect '{defect.name}' ({defect.anomaly_class} anomaly, "
        f"severity {defect.severity}).{also} Visual cues: {defect.visual_cues} "
        f"Typical location: {defect.typical_location} How it differs from normal: "
        f"{defect.distinguish_from_normal} Likely cause: {defect.likely_cause}"
    )
    # What the indexes see: names, aliases and what it looks like, where. The prose on telling it
    # from normal and on causes is for the reasoner; it mostly repeats object words and blurs retrieval.
    search_text = (
        f"{spec.display_name} {defect.name} {defect.type.replace('_', ' ')}. {aliases}. "
        f"{defect.visual_cues} {defect.typical_location}"
    )
    return KnowledgeEntry(
        id=f"{spec.key}/{defect.type}",
        dataset=spec.dataset,
        category=spec.category,
        kind="defect",
        defect_type=defect.type,
        title=f"{spec.display_name}: {defect.name}",
        text=text,
        search_text=search_text,
        source=source,
    )


def entries_of(spec: CategoryFile, source: str) -> list[KnowledgeEntry]:
    """Every entry of one category file: the normal entry first, then the defects in file order."""
    return [normal_entry(spec, source)] + [defect_entry(spec, d, source) for d in spec.defects]
