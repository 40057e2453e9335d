"""The triage report: one self-contained HTML file (inline style, script, SVG and thumbnails; works
offline) that an operator reads top-down: a pattern across images if one shows, what needs a human
first, the scores per product, the counts, the errors, then every image in a table sortable and filterable by verdict, type and product."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from riad_agent.errors import OutputWriteError
from riad_agent.graphs.triage_results import read_records
from riad_agent.imaging import ImagePolicy
from riad_agent.schemas import references_text, score_text
from riad_agent.triage_assets import SCRIPT, STYLE
from riad_agent.triage_recurring import recurring_places
from riad_agent.triage_svg import score_histogram
from riad_agent.triage_thumbs import BOX_COLOURS, Thumbnail, make_thumbnail
from riad_agent.triage_view import (
    OUTCOME_RANK,
    TriageRow,
    needs_human,
    rows_from_records,
    table_order,
    triaged_root,
)

#: Longest side of a thumbnail in the table and the cards, pixels (about 3-5 KB of JPEG each).
THUMB_PX = 128
#: At most this many cards in "needs a human first"; the table holds the rest.
FIRST_CARDS = 14
_NONE = "-"  # filter value of "no type" / "no product named"
_VERDICTS = ("uncertain", "anomalous", "error", "normal")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


class _Thumbs:
    """Each image's thumbnail made once, whether it shows in a card, the table, or both."""

    def __init__(self, max_px: int, policy: ImagePolicy | None = None) -> None:
        self.max_px = max_px
        self.policy = policy
        self._made: dict[tuple[str, bool], Thumbnail] = {}

    def html(self, row: TriageRow, *, heatmap: bool = False) -> str:
        path = row.heatmap if heatmap else row.image
        if not path:
            return self._placeholder("no heatmap" if heatmap else "no image")
        key = (path, heatmap)
        if key not in self._made:
            self._made[key] = make_thumbnail(
                path,
                self.max_px,
                box=None if heatmap else row.box,
                size=row.size,
                colour=None if heatmap else BOX_COLOURS.get(row.outcome),
                policy=self.policy,
            )
        thumb = self._made[key]
        if thumb.uri is None:
            return self._placeholder("image not readable", thumb.problem)
        return f'<img class="thumb" alt="{_e(row.path)}" src="{thumb.uri}">'

    def _placeholder(self, text: str, why: str | None = None) -> str:
        side = f"width:{self.max_px}px;height:{self.max_px}px"
        title = f' title="{_e(why)}"' if why else ""
        return f'<div class="ph" style="{side}"{title}>{_e(text)}</div>'


def _badge(outcome: str) -> str:
    return f'<span class="badge {outcome}">{outcome}</span>'


def _score(row: TriageRow) -> str:
    return "" if row.score is None else score_text(row.score)


def _defect(row: TriageRow) -> str:
    if not row.defect_type:
        return ""
    confidence = (
        ""
        if row.type_confidence is None
        else f' <span class="muted" title="similarity to the closest labelled exemplar">'
        f"({row.type_confidence:.2f})</span>"
    )
    if row.outcome == "uncertain":  # not called defective: what it would be, not a finding
        return f'<span title="if it is a defect">looks like {_e(row.defect_type)}</span>' + confidence
    return _e(row.defect_type) + confidence


def _product(row: TriageRow) -> str:
    if not row.product:
        named = '<span class="muted">no product named</span>'
    elif row.product_guessed:
        named = f'<span class="guessed" title="recognised from the image">{_e(row.product)}</span>'
    else:
        named = _e(row.product)
    return named + _basis(row)


def _basis(row: TriageRow) -> str:
    """' · 4 refs' (its title the pose): what the verdict rests on; nothing for lines that do not say."""
    if row.references is None or row.outcome == "error":
        return ""
    pose = f"; pose: {row.pose}" if row.pose else ""
    count = "no references" if row.references == 0 else f"{row.references} ref" + "s" * (row.references != 1)
    title = f"compared with {references_text(row.references)}{pose}"
    return f' <span class="muted" title="{_e(title)}">· {count}</span>'


def _where(row: TriageRow) -> str:
    if row.box is None or row.outcome == "normal":
        return ""
    x0, y0, x1, y1 = (round(v) for v in row.box)
    of = f" of {row.size[0]}x{row.size[1]} px" if row.size else ""
    return f"strongest region x {x0}-{x1}, y {y0}-{y1}{of}"


def _note(row: TriageRow) -> str:
    return row.note or _where(row)


def _card(row: TriageRow, thumbs: _Thumbs) -> str:
    score = f" score <b>{_score(row)}</b>" if row.score is not None else ""
    what = " · ".join(part for part in (_product(row), _defect(row)) if part)
    why = row.reason or (row.explanation or "").split(". ")[0] or _where(row)
    return (
        f'<div class="card {row.outcome}">{thumbs.html(row)}<div class="path">{_e(row.path)}</div>'
        f'<div class="line">{_badge(row.outcome)}{score}</div><div>{what}</div>'
        f'<div class="why" title="{_e(row.note)}">{_e(why)}</div></div>'
    )


def _first_section(rows: list[TriageRow], thumbs: _Thumbs, first: int) -> str:
    urgent = needs_human(rows)
    head = '<section id="first"><h2>Needs a human first'
    if not urgent:
        return head + '</h2><p class="muted">Nothing: no image is uncertain or anomalous.</p></section>'
    more = len(urgent) - first
    rest = (
        f'<p class="muted">and {more} more: <a href="#verdict=uncertain">uncertain</a>, '
        f'<a href="#verdict=anomalous">anomalous</a> in the table below.</p>'
        if more > 0
        else ""
    )
    uncertain = sum(row.outcome == "uncertain" for row in urgent)
    anomalous = len(urgent) - uncertain
    parts = [
        f"{count} {outcome}"
        for count, outcome in ((uncertain, "uncertain"), (anomalous, "anomalous"))
        if count
    ]
    order = (
        ", uncertain first, then by score"
        if uncertain and anomalous
        else ", by score"
        if len(urgent) > 1
        else ""
    )
    return (
        f'{head} <span class="muted">({" and ".join(parts)}{order})</span></h2>'
        f'<div class="cards">{"".join(_card(row, thumbs) for row in urgent[:first])}</div>{rest}</section>'
    )


def _verdict_chips(counts: Counter[str]) -> str:
    chips = [
        f'<a class="chip" href="#verdict={v}">{_badge(v)}<b>{counts[v]}</b></a>'
        for v in _VERDICTS
        if counts[v]
    ]
    return f'<div class="chips">{"".join(chips)}</div>'


def _histograms(rows: list[TriageRow]) -> str:
    by_product: dict[str, list[TriageRow]] = {}
    for row in rows:
        by_product.setdefault(row.product or _NONE, []).append(row)
    panels = []
    for product in sorted(by_product, key=lambda p: (p == _NONE, p)):
        group = by_product[product]
        threshold = Counter(row.threshold for row in group).most_common(1)[0][0]
        counts: Counter[str] = Counter(row.outcome for row in group)
        name = "no product named" if product == _NONE else product
        summary = ", ".join(f"{counts[v]} {v}" for v in _VERDICTS if counts[v])
        label = f"scores of {name}: {summary}"
        panels.append(
            f'<div class="panel"><h3><a href="#product={_e(product)}">{_e(name)}</a></h3>'
            f'<div class="sub">{len(group)} images: {_e(summary)}</div>'
            f"{score_histogram(group, threshold, label=label)}</div>"
        )
    return "".join(panels)


def _patterns(rows: list[TriageRow]) -> str:
    """Where most of a product's anomalous images peak at one place (riad_agent.triage_recurring)."""
    places = recurring_places(rows)
    if not places:
        return ""
    items = "".join(f"<li>{_e(place.sentence())}</li>" for place in places)
    return (
        f'<section id="patterns" class="caution"><h2>A pattern across images</h2><ul>{items}</ul></section>'
    )


def _type_counts(rows: list[TriageRow]) -> str:
    flagged = [row for row in rows if row.outcome in ("anomalous", "uncertain")]
    counts = Counter(row.defect_type or _NONE for row in flagged)
    lines = [
        f'<tr class="count"><td><a href="#type={_e(kind)}">{_e("no type stated" if kind == _NONE else kind)}'
        f'</a></td><td class="num">{count}</td></tr>'
        for kind, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]
    body = f'<table class="counts">{"".join(lines)}</table>' if lines else '<p class="muted">none</p>'
    return (
        f'<div class="panel"><h3>Defect types</h3><div class="sub">of anomalous and uncertain images</div>'
        f"{body}</div>"
    )


def _errors(rows: list[TriageRow]) -> str:
    failed = sorted((row for row in rows if row.outcome == "error"), key=lambda row: row.path)
    if not failed:
        return ""
    items = "".join(f"<li><code>{_e(row.path)}</code>: {_e(row.error or '')}</li>" for row in failed)
    return f'<section id="errors"><h2>Errors ({len(failed)})</h2><ul class="errors">{items}</ul></section>'


def _options(name: str, values: Iterable[str], label: str, none_label: str) -> str:
    counts = Counter(values)
    options = "".join(
        f'<option value="{_e(v)}">{_e(none_label if v == _NONE else v)} ({counts[v]})</option>'
        for v in sorted(counts, key=lambda v: (v == _NONE, OUTCOME_RANK.get(v, 0), v))
    )
    return f'<label>{label} <select id="f-{name}"><option value="">all</option>{options}</select></label>'


def _filters(rows: list[TriageRow]) -> str:
    return (
        '<div class="filters">'
        + _options("verdict", (r.outcome for r in rows), "verdict", "")
        + _options("type", (r.defect_type or _NONE for r in rows), "defect type", "no type")
        + _options("product", (r.product or _NONE for r in rows), "product", "no product named")
        + '<label>path <input id="f-q" type="search" placeholder="part of the path"></label>'
        '<button id="f-reset" type="button">show all</button> <span id="shown" class="muted"></span></div>'
    )


def _table_row(row: TriageRow, thumbs: _Thumbs, heatmaps: bool) -> str:
    score_key = -1.0 if row.score is None else row.score
    cells = [
        f"<td>{thumbs.html(row)}</td>",
        f'<td class="path" data-k="path" data-v="{_e(row.path)}" data-s="{_e(row.path)}">{_e(row.path)}</td>',
        f'<td data-k="product" data-v="{_e(row.product or _NONE)}" data-s="{_e(row.product or "~")}">'
        f"{_product(row)}</td>",
        f'<td data-k="verdict" data-v="{row.outcome}" data-s="{3 - OUTCOME_RANK[row.outcome]}">'
        f"{_badge(row.outcome)}</td>",
        f'<td class="num" data-k="score" data-s="{score_key:.6f}">{_score(row)}</td>',
        f'<td data-k="type" data-v="{_e(row.defect_type or _NONE)}" data-s="{_e(row.defect_type or "~")}">'
        f"{_defect(row)}</td>",
    ]
    if heatmaps:
        cells.append(f"<td>{thumbs.html(row, heatmap=True)}</td>")
    cells.append(f'<td class="note"><div>{_e(_note(row))}</div></td>')
    return "<tr>" + "".join(cells) + "</tr>"


def _table(rows: list[TriageRow], thumbs: _Thumbs, heatmaps: bool) -> str:
    head = (
        "<th>image</th>"
        '<th data-sort="path">path</th><th data-sort="product">product</th>'
        '<th data-sort="verdict" data-num="1">verdict</th><th data-sort="score" data-num="1">score</th>'
        '<th data-sort="type">defect type</th>' + ("<th>heatmap</th>" if heatmaps else "") + "<th>note</th>"
    )
    body = "".join(_table_row(row, thumbs, heatmaps) for row in sorted(rows, key=table_order))
    return (
        f'<section id="all"><h2>All images</h2>{_filters(rows)}'
        f'<table id="rows"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        '<p class="legend">Boxes: the strongest region of anomalous (red) and uncertain (amber) images. '
        "Dotted product: recognised from the image; after it, how many normal references the image was "
        "compared with (the pose on hover). In brackets after a type: its similarity to the "
        "closest labelled exemplar (0-1, not a probability). Click a heading to sort.</p>"
        "</section>"
    )


def _meta(jsonl: Path, rows: list[TriageRow]) -> str:
    root = triaged_root(rows)
    where = f" under <code>{_e(root)}</code>" if root else ""
    try:
        stamp = datetime.fromtimestamp(jsonl.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except OSError:
        stamp = "?"
    return (
        f'<div class="meta">{len(rows)} images{where} · results <code>{_e(jsonl)}</code> '
        f"(last written {stamp})</div>"
    )


def render_triage_html(
    jsonl: Path,
    title: str = "riad-agent triage",
    *,
    thumb_px: int = THUMB_PX,
    first: int = FIRST_CARDS,
    heatmaps: bool = False,
    policy: ImagePolicy | None = None,
) -> str:
    """The page for the results in ``jsonl`` (each image once, by its last line; new and old lines);
    :class:`~riad_agent.errors.ResultsFileError` when the file holds anything else. ``thumb_px`` bounds
    each thumbnail's longest side (so the file's size), ``first`` the cards of "needs a human first";
    ``heatmaps`` adds each image's heatmap to the table; ``policy`` is the image policy the pictures
    are read under (the settings' allowed roots: a results file cannot pull other files into the page)."""
    rows = rows_from_records(read_records(jsonl))
    thumbs = _Thumbs(max(16, thumb_px), policy)
    counts: Counter[str] = Counter(row.outcome for row in rows)
    summary = ", ".join(f"{counts[v]} {v}" for v in _VERDICTS if counts[v]) or "no images"
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{STYLE}</style></head>'
        f"<body><h1>{_e(title)}: {_e(summary)}</h1>{_meta(jsonl, rows)}{_verdict_chips(counts)}"
        f"{_patterns(rows)}{_first_section(rows, thumbs, max(0, first))}"
        f'<section id="overview"><h2>Counts and scores by product</h2><div class="overview">'
        f"{_type_counts(rows)}{_histograms(rows)}</div></section>"
        f"{_errors(rows)}{_table(rows, thumbs, heatmaps)}<script>{SCRIPT}</script></body></html>"
    )


def write_triage_html(
    jsonl: Path,
    out: Path,
    *,
    thumb_px: int = THUMB_PX,
    first: int = FIRST_CARDS,
    heatmaps: bool = False,
    policy: ImagePolicy | None = None,
) -> None:
    """Write the triage page for ``jsonl`` to ``out`` (see :func:`render_triage_html` for the options)."""
    page = render_triage_html(jsonl, thumb_px=thumb_px, first=first, heatmaps=heatmaps, policy=policy)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise OutputWriteError(f"cannot write {out}: {exc.strerror or exc}") from exc
