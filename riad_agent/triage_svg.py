"""A product's score histogram as inline SVG: bars stacked by verdict, the threshold marked."""

from __future__ import annotations

from html import escape

from riad_agent.triage_view import TriageRow

#: Verdict colours shared with the page's badges.
COLOURS: dict[str, str] = {"normal": "#2e9e5b", "uncertain": "#e0a020", "anomalous": "#d0362c"}
_STACK = ("normal", "uncertain", "anomalous")
_W, _H = 230, 140
_LEFT, _RIGHT, _TOP, _BOTTOM = 26, 8, 16, 24


def _x(value: float) -> float:
    return _LEFT + value * (_W - _LEFT - _RIGHT)


def score_histogram(rows: list[TriageRow], threshold: float, bins: int = 20, label: str = "") -> str:
    """The histogram of the scores of ``rows`` over [0, 1] (a score out of range counts in the end bin)."""
    counts = [dict.fromkeys(_STACK, 0) for _ in range(bins)]
    for row in rows:
        if row.score is None or row.outcome not in _STACK:
            continue
        index = min(max(int(row.score * bins), 0), bins - 1)
        counts[index][row.outcome] += 1
    tallest = max((sum(c.values()) for c in counts), default=0) or 1
    plot_h = _H - _TOP - _BOTTOM
    width = (_W - _LEFT - _RIGHT) / bins
    parts = [
        f'<svg class="hist" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}" stroke="#8a93a3"/>',
        f'<text x="{_LEFT - 4}" y="{_TOP + 4}" text-anchor="end" class="ax">{tallest}</text>',
        f'<text x="{_LEFT - 4}" y="{_H - _BOTTOM}" text-anchor="end" class="ax">0</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{_x(tick):.1f}" y="{_H - 8}" text-anchor="middle" class="ax">{tick:g}</text>')
    for index, stack in enumerate(counts):
        base = float(_H - _BOTTOM)
        for outcome in _STACK:
            count = stack[outcome]
            if not count:
                continue
            height = count / tallest * plot_h
            base -= height
            low, high = index / bins, (index + 1) / bins
            parts.append(
                f'<rect x="{_LEFT + index * width + 0.5:.1f}" y="{base:.1f}" width="{width - 1:.1f}" '
                f'height="{height:.1f}" fill="{COLOURS[outcome]}"><title>{count} {outcome}, score '
                f"{low:.2f}-{high:.2f}</title></rect>"
            )
    at = _x(min(max(threshold, 0.0), 1.0))
    parts.append(
        f'<line x1="{at:.1f}" y1="{_TOP - 6}" x2="{at:.1f}" y2="{_H - _BOTTOM}" stroke="#1d2330" '
        'stroke-width="1.5" stroke-dasharray="4 3" class="threshold"/>'
        f'<text x="{at + 4:.1f}" y="{_TOP + 2}" class="ax">threshold {threshold:.2f}</text></svg>'
    )
    return "".join(parts)
