"""Loaders that turn knowledge sources into validated :class:`KnowledgeEntry` lists.

Three formats: our YAML category files (one file or a folder tree), MMAD's ``domain_knowledge.json``
(dataset -> category -> {defect key: "<Tag> Description: ..."}) and plain Markdown folders (one entry
per file, read with llama-index's ``SimpleDirectoryReader``). Every loader validates everything
before returning, so a store never sees half a source.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from riad_agent.errors import DuplicateEntryError, KnowledgeFormatError
from riad_agent.knowledge.categories import MMAD_DATASETS, snake
from riad_agent.knowledge.schema import CategoryFile, KnowledgeEntry, dataset_title, entries_of
from riad_agent.protocols import Pose

SourceFormat = Literal["riad", "mmad", "markdown"]

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?", re.DOTALL)
_MMAD_TEXT = re.compile(r"^\s*(?P<tag>[^\n]*?)\s+Description\s*:\s*(?P<body>.*)$", re.DOTALL | re.IGNORECASE)


def default_base_path() -> Path:
    """The packaged knowledge base folder (``knowledge/base`` inside the installed package)."""
    return Path(__file__).resolve().parent / "base"


def category_pose(category: str, base: Path | None = None) -> Pose | None:
    """The ``pose`` the packaged file of canonical 'dataset/category' declares, None when it has none."""
    dataset, _, name = category.partition("/")
    path = (base or default_base_path()) / dataset / f"{name}.yaml"
    if not name or not path.is_file():
        return None
    try:
        return parse_category_file(path).pose
    except (KnowledgeFormatError, DuplicateEntryError):
        return None


def _field_path(loc: Iterable[Any]) -> str:
    return ".".join(str(part) for part in loc) or "<root>"


def check_unique(entries: list[KnowledgeEntry]) -> None:
    """Raise :class:`DuplicateEntryError` naming both sources when two entries share an id."""
    seen: dict[str, KnowledgeEntry] = {}
    for entry in entries:
        first = seen.get(entry.id)
        if first is not None:
            raise DuplicateEntryError(
                f"entry id {entry.id!r} is defined twice: in {first.source or '?'} and in "
                f"{entry.source or '?'}; keep one of them"
            )
        seen[entry.id] = entry


# ---------------------------------------------------------------- our YAML format


def parse_category_file(path: Path) -> CategoryFile:
    """Read and validate one YAML category file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise KnowledgeFormatError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeFormatError(f"{path}: cannot read the file ({exc})") from exc
    if not isinstance(raw, dict):
        raise KnowledgeFormatError(f"{path}: the top level must be a mapping with dataset, category, ...")
    try:
        spec = CategoryFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors()[:5]:
            where = _field_path(error["loc"])
            if error["type"] == "extra_forbidden":
                problems.append(f"field {where!r} is not part of the format")
            elif error["type"] == "missing":
                problems.append(f"field {where!r} is missing")
            else:
                problems.append(f"field {where!r}: {error['msg']}")
        raise KnowledgeFormatError(f"{path}: " + "; ".join(problems)) from exc
    types = [d.type for d in spec.defects]
    for index, name in enumerate(types):
        if name in types[:index]:
            raise DuplicateEntryError(
                f"{path}: field 'defects.{index}.type': defect type {name!r} appears twice"
            )
    return spec


def load_riad(path: Path) -> list[KnowledgeEntry]:
    """Entries of one YAML file or of every ``*.yaml``/``*.yml`` below a folder (sorted, validated)."""
    path = Path(path)
    if path.is_file():
        files, root = [path], path.parent
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        root = path
    else:
        raise KnowledgeFormatError(f"{path}: no such file or folder")
    entries: list[KnowledgeEntry] = []
    categories: dict[str, Path] = {}
    for file in files:
        spec = parse_category_file(file)
        if spec.key in categories:
            raise DuplicateEntryError(
                f"{file}: field 'category': category {spec.key!r} is already defined in "
                f"{categories[spec.key]}"
            )
        categories[spec.key] = file
        entries.extend(entries_of(spec, file.relative_to(root).as_posix()))
    check_unique(entries)
    return entries


# ---------------------------------------------------------------- MMAD domain_knowledge.json


def _mmad_entry(dataset: str, category: str, key: str, value: str, source: str) -> KnowledgeEntry:
    match = _MMAD_TEXT.match(value)
    tag, body = (match.group("tag").strip(), match.group("body").strip()) if match else ("", value.strip())
    defect_type = snake(key)
    is_normal = defect_type in ("good", "normal")
    display = category.replace("_", " ").title()
    name = tag or key.replace("_", " ").title()
    if is_normal:
        text = f"{display} ({dataset_title(dataset)}) - normal, defect-free appearance. {body}"
        title = f"{display}: normal appearance"
        search_text = f"{display} normal good defect-free. {body}"
    else:
        text = f"{display} - defect '{name}'. {body}"
        title = f"{display}: {name}"
        search_text = f"{display} {name} {defect_type.replace('_', ' ')} defect. {body}"
    return KnowledgeEntry(
        id=f"{dataset}/{category}/{'normal' if is_normal else defect_type}",
        dataset=dataset,
        category=category,
        kind="normal" if is_normal else "defect",
        defect_type=None if is_normal else defect_type,
        title=title,
        text=text,
        search_text=search_text,
        source=source,
    )


def load_mmad(path: Path) -> list[KnowledgeEntry]:
    """Entries of an MMAD-style ``domain_knowledge.json``: dataset -> category -> {key: text}."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise KnowledgeFormatError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except OSError as exc:
        raise KnowledgeFormatError(f"{path}: cannot read the file ({exc})") from exc
    if not isinstance(raw, dict):
        raise KnowledgeFormatError(f"{path}: the top level must map dataset names to categories")
    entries: list[KnowledgeEntry] = []
    for dataset_name, categories in raw.items():
        dataset = MMAD_DATASETS.get(dataset_name.strip().lower(), snake(dataset_name))
        if not isinstance(categories, dict):
            raise KnowledgeFormatError(f"{path}: field {dataset_name!r} must map category names to defects")
        for category_name, defects in categories.items():
            category = snake(category_name)
            if not isinstance(defects, dict):
                raise KnowledgeFormatError(
                    f"{path}: field '{dataset_name}.{category_name}' must map defect names to descriptions"
                )
            for key, value in defects.items():
                if not isinstance(value, str) or not value.strip():
                    raise KnowledgeFormatError(
                        f"{path}: field '{dataset_name}.{category_name}.{key}' must be a non-empty string"
                    )
                entries.append(_mmad_entry(dataset, category, key, value, path.name))
    check_unique(entries)
    return entries


# ---------------------------------------------------------------- Markdown folders


def _front_matter(text: str, file: str) -> tuple[dict[str, Any], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise KnowledgeFormatError(f"{file}: front matter is not valid YAML") from exc
    if not isinstance(meta, dict):
        raise KnowledgeFormatError(f"{file}: front matter must be a mapping")
    return meta, text[match.end() :]


_MARKDOWN_KEYS = {"dataset", "category", "kind", "defect_type", "title"}


def load_markdown(path: Path) -> list[KnowledgeEntry]:
    """One entry per Markdown file below ``path``.

    Dataset and category come from the front matter (``dataset:``, ``category:``) or from the folders
    (``<dataset>/<category>/<file>.md``); ``kind`` and ``defect_type`` from the front matter or the file
    name (``normal.md`` is the normal entry, any other name a defect type).
    """
    from llama_index.core import SimpleDirectoryReader

    root = Path(path)
    if not root.is_dir():
        raise KnowledgeFormatError(f"{root}: not a folder of Markdown files")
    try:
        documents = SimpleDirectoryReader(
            input_dir=str(root), recursive=True, required_exts=[".md", ".markdown"], file_extractor={}
        ).load_data(show_progress=False)
    except ValueError as exc:  # no files found
        raise KnowledgeFormatError(f"{root}: {exc}") from exc
    entries: list[KnowledgeEntry] = []
    for document in documents:
        file = Path(document.metadata.get("file_path", ""))
        relative = file.resolve().relative_to(root.resolve())
        meta, body = _front_matter(document.text, str(relative))
        unknown = set(meta) - _MARKDOWN_KEYS
        if unknown:
            raise KnowledgeFormatError(f"{relative}: front matter field {sorted(unknown)[0]!r} is not known")
        folders = relative.parts[:-1]
        dataset = snake(str(meta.get("dataset") or (folders[-2] if len(folders) >= 2 else "custom")))
        category = snake(str(meta.get("category") or (folders[-1] if folders else "")))
        if not category:
            raise KnowledgeFormatError(f"{relative}: field 'category' is missing (front matter or folder)")
        stem_name = snake(file.stem)
        kind = str(meta.get("kind") or ("normal" if stem_name in ("normal", "good") else "defect"))
        if kind not in ("normal", "defect"):
            raise KnowledgeFormatError(f"{relative}: field 'kind' must be 'normal' or 'defect'")
        defect_type = None if kind == "normal" else snake(str(meta.get("defect_type") or stem_name))
        heading = next((ln.lstrip("#").strip() for ln in body.splitlines() if ln.startswith("#")), "")
        display = category.replace("_", " ").title()
        title = str(meta.get("title") or heading or f"{display}: {defect_type or 'normal'}")
        text = " ".join(body.split())
        if not text:
            raise KnowledgeFormatError(f"{relative}: the file has no text")
        entries.append(
            KnowledgeEntry(
                id=f"{dataset}/{category}/{defect_type or 'normal'}",
                dataset=dataset,
                category=category,
                kind="normal" if kind == "normal" else "defect",
                defect_type=defect_type,
                title=title,
                text=text,
                search_text=f"{display} {title}. {text}",
                source=relative.as_posix(),
            )
        )
    entries.sort(key=lambda e: e.id)
    check_unique(entries)
    return entries


# ---------------------------------------------------------------- dispatch


def detect_format(path: Path) -> SourceFormat:
    """Guess a source's format: ``.json`` -> mmad, a folder with Markdown but no YAML -> markdown."""
    path = Path(path)
    if path.suffix == ".json":
        return "mmad"
    if path.suffix in (".md", ".markdown"):
        return "markdown"
    if path.is_dir():
        has_yaml = any(p.suffix in (".yaml", ".yml") for p in path.rglob("*"))
        has_md = any(p.suffix in (".md", ".markdown") for p in path.rglob("*"))
        if has_md and not has_yaml:
            return "markdown"
    return "riad"


def load_entries(path: Path, fmt: SourceFormat | None = None) -> list[KnowledgeEntry]:
    """Entries of a source in any supported format (guessed when ``fmt`` is None)."""
    fmt = fmt or detect_format(Path(path))
    if fmt == "riad":
        return load_riad(Path(path))
    if fmt == "mmad":
        return load_mmad(Path(path))
    if fmt == "markdown":
        return load_markdown(Path(path))
    raise KnowledgeFormatError(f"unknown knowledge format {fmt!r}; use riad, mmad or markdown")


def scope_of(path: Path) -> str:
    """The scope an ingest of ``path`` replaces: 'package:base' for the packaged base, else the path."""
    resolved = Path(path).resolve()
    if resolved == default_base_path().resolve():
        return "package:base"
    return str(resolved)


def tree_fingerprint(path: Path) -> str:
    """Hash of the names and bytes of the YAML files below ``path`` (cheap change detection)."""
    digest = hashlib.sha256()
    root = Path(path)
    if root.is_file():
        files, base = [root], root.parent
    else:
        files, base = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml")), root
    for file in files:
        digest.update(file.relative_to(base).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:32]
