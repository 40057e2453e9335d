"""The triage report page: what an operator reads, from new and old results lines, offline and escaped."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from support.fakes import part_image

from riad_agent.errors import OutputWriteError
from riad_agent.triage_html import render_triage_html, write_triage_html

ODD = 'odd <b>name</b> & "q".png'


class _Page(HTMLParser):
    """The parts of the page the tests read: table rows (cells by data-k), cards, texts, images."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict[str, Any]] = []
        self.cards: list[dict[str, Any]] = []
        self.images: list[str] = []
        self.placeholders = 0
        self.thresholds: list[float] = []
        self.svgs = 0
        self.links: list[str] = []
        self.text: list[str] = []
        self._row: dict[str, Any] | None = None
        self._cell: str | None = None
        self._card: dict[str, Any] | None = None
        self._card_depth = 0
        self._in_card_path = False
        self._in_rows = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "table" and a.get("id") == "rows":
            self._in_rows = True
        if tag == "tr" and self._in_rows and not classes:
            self._row = {"hidden": "hidden" in a, "img": None, "placeholder": False}
        if tag == "td" and self._row is not None and "data-k" in a:
            self._cell = a["data-k"]
            self._row[self._cell] = {"v": a.get("data-v"), "s": a.get("data-s"), "text": ""}
        if tag == "div" and "card" in classes:
            self._card, self._card_depth = {"outcome": classes[-1], "path": "", "img": None}, 0
        if self._card is not None and tag == "div":
            self._card_depth += 1
            self._in_card_path = "path" in classes
        if tag == "img":
            self.images.append(a.get("src", ""))
            for holder in (self._row, self._card):
                if holder is not None and holder["img"] is None:
                    holder["img"] = a.get("src", "")
        if tag == "div" and "ph" in classes:
            self.placeholders += 1
            if self._row is not None:
                self._row["placeholder"] = True
        if tag == "svg":
            self.svgs += 1
        if tag == "line" and "threshold" in classes:
            self.thresholds.append(float(a["x1"]))
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if tag in ("link", "iframe", "object", "embed"):
            self.links.append(f"<{tag}>")
        if tag == "script" and "src" in a:
            self.links.append("<script src>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_rows = False
        if tag == "td":
            self._cell = None
        if tag == "tr" and self._row is not None:
            if "path" in self._row:  # not the heading
                self.rows.append(self._row)
            self._row = None
        if tag == "div" and self._card is not None:
            self._in_card_path = False
            self._card_depth -= 1
            if self._card_depth == 0:
                self.cards.append(self._card)
                self._card = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row is not None and self._cell is not None:
            self._row[self._cell]["text"] += data
        if self._card is not None and self._in_card_path:
            self._card["path"] += data

    @property
    def visible(self) -> list[str]:
        return [row["path"]["v"] for row in self.rows if not row["hidden"]]


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def _new(image: Path, root: Path, **fields: Any) -> dict[str, Any]:
    line = {
        "image": str(image),
        "path": image.relative_to(root).as_posix(),
        "product": "washer",
        "product_guessed": True,
        "verdict": "normal",
        "reason": None,
        "score": 0.1,
        "threshold": 0.5,
        "regions": [],
        "defect_type": None,
        "type_confidence": None,
        "size": [128, 128],
        "reasoner": False,
        "heatmap": None,
        "error": None,
        "elapsed_ms": 12.0,
        "report": None,
    }
    line.update(fields)
    return line


def _old(image: Path, verdict: str, score: float, **report: Any) -> dict[str, Any]:
    """A line as riad-agent wrote it before issue 20: only image/report/heatmap/error/elapsed_ms."""
    body = {"verdict": verdict, "anomaly_score": score, "image_size": [128, 128], "explanation": "old words."}
    body.update(report)
    return {"image": str(image), "report": body, "heatmap": None, "error": None, "elapsed_ms": 40.0}


def _save(path: Path, defect: bool, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    part_image(defect, seed=seed).save(path)
    return path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results file of a folder with two ``000.png`` in two defect folders, of every kind of line."""
    root = tmp_path / "line"
    scratch = _save(root / "washer" / "scratch" / "000.png", True, 1)
    hole = _save(root / "washer" / "hole" / "000.png", True, 2)
    good = _save(root / "washer" / "good" / "000.png", False, 3)
    odd = _save(root / "fabric" / ODD, True, 4)
    borderline = _save(root / "fabric" / "b.png", False, 5)
    unknown = _save(root / "other" / "u.png", False, 6)
    lines = [
        _new(good, root),
        _new(
            scratch,
            root,
            verdict="anomalous",
            score=0.93,
            regions=[{"box": [32, 40, 64, 60], "score": 0.93}, {"box": [0, 0, 8, 8], "score": 0.6}],
            defect_type="scratch",
            type_confidence=0.81,
            references=4,
            pose="fixed (references)",
        ),
        _new(hole, root, verdict="anomalous", score=0.71, regions=[{"box": [10, 10, 30, 30], "score": 0.7}]),
        _new(odd, root, product="fabric", verdict="anomalous", score=0.99, defect_type='<i>"x"</i> & y'),
        _new(
            borderline,
            root,
            product="fabric",
            verdict="uncertain",
            score=0.52,
            reason="the score is close to 0.5",
            defect_type="stain",
            type_confidence=0.44,
        ),
        _new(
            unknown,
            root,
            product=None,
            product_guessed=False,
            verdict="uncertain",
            score=0.5,
            reason="the image matches no registered product",
        ),
        _new(
            root / "washer" / "gone.png",
            root,
            verdict=None,
            score=None,
            error={"type": "InvalidImageError", "message": "gone.png is not an image <really>"},
        ),
        # an image recorded fine but deleted since: the page shows a placeholder
        _new(root / "washer" / "deleted.png", root, verdict="anomalous", score=0.8, defect_type="hole"),
    ]
    out = tmp_path / "results.jsonl"
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def test_new_lines_show_relative_paths_verdict_score_type_and_product(results: Path) -> None:
    page = _parse(render_triage_html(results))
    by_path = {row["path"]["v"]: row for row in page.rows}
    assert sorted(by_path) == sorted(
        [
            "washer/good/000.png",
            "washer/scratch/000.png",
            "washer/hole/000.png",
            f"fabric/{ODD}",
            "fabric/b.png",
            "other/u.png",
            "washer/gone.png",
            "washer/deleted.png",
        ]
    )  # the two 000.png are told apart
    scratch = by_path["washer/scratch/000.png"]
    assert scratch["verdict"]["v"] == "anomalous" and scratch["score"]["text"] == "0.93"
    assert scratch["type"]["v"] == "scratch" and "0.81" in scratch["type"]["text"]
    assert scratch["product"]["v"] == "washer"
    # after the product, what the verdict rests on: the count, the pose on hover; older lines say nothing
    assert "· 4 refs" in scratch["product"]["text"] and "· " not in by_path["fabric/b.png"]["product"]["text"]
    assert 'title="compared with 4 normal references; pose: fixed (references)"' in render_triage_html(
        results
    )
    # an uncertain image is not called defective: its type is what it would be
    borderline = by_path["fabric/b.png"]
    assert "looks like stain" in borderline["type"]["text"] and "0.44" in borderline["type"]["text"]
    assert not scratch["type"]["text"].startswith("looks like")
    assert (
        by_path["other/u.png"]["product"]["v"] == "-"
        and by_path["washer/gone.png"]["verdict"]["v"] == "error"
    )
    # default order: uncertain, anomalous (highest score first), errors, normal
    order = [row["path"]["v"] for row in page.rows]
    assert order == [
        "fabric/b.png",
        "other/u.png",
        f"fabric/{ODD}",
        "washer/scratch/000.png",
        "washer/deleted.png",
        "washer/hole/000.png",
        "washer/gone.png",
        "washer/good/000.png",
    ]


def test_needs_a_human_first_comes_first_uncertain_then_anomalous_by_score(results: Path) -> None:
    html = render_triage_html(results, first=4)
    page = _parse(html)
    assert html.index("Needs a human first") < html.index("Counts and scores") < html.index('id="rows"')
    assert [card["path"] for card in page.cards] == [
        "fabric/b.png",
        "other/u.png",
        f"fabric/{ODD}",
        "washer/scratch/000.png",
    ]
    assert [card["outcome"] for card in page.cards] == ["uncertain", "uncertain", "anomalous", "anomalous"]
    assert "and 2 more" in html  # deleted.png and hole/000.png wait in the table
    assert "the score is close to 0.5" in "".join(page.text)
    assert "(2 uncertain and 4 anomalous, uncertain first, then by score)" in html


def test_the_first_heading_names_only_the_outcomes_it_lists(tmp_path: Path) -> None:
    root = tmp_path / "line"
    lines = [
        _new(_save(root / f"{i}.png", True, i), root, verdict="anomalous", score=0.6 + i / 10)
        for i in range(2)
    ] + [_new(_save(root / "good.png", False, 9), root)]
    out = tmp_path / "results.jsonl"
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    html = render_triage_html(out)
    assert "(2 anomalous, by score)" in html and "uncertain first" not in html


def test_counts_histograms_and_errors(results: Path) -> None:
    page = _parse(render_triage_html(results))
    text = " ".join("".join(page.text).split())
    assert "2 uncertain, 4 anomalous, 1 error, 1 normal" in text
    # per type, over anomalous and uncertain images
    assert re.search(r"scratch\s*1", "".join(page.text)) and re.search(
        r"no type stated\s*2", "".join(page.text)
    )
    assert re.search(r"stain\s*1", "".join(page.text))  # the uncertain image's look-alike type
    # one histogram per product (washer, fabric, unknown), the threshold 0.5 marked at mid-axis
    assert page.svgs == 3 and len(page.thresholds) == 3
    assert len(set(page.thresholds)) == 1
    assert "washer/gone.png: InvalidImageError: gone.png is not an image <really>" in text


def test_thumbnails_are_inline_with_the_strongest_box_and_unreadable_images_are_placeholders(
    results: Path,
) -> None:
    page = _parse(render_triage_html(results, thumb_px=64))
    assert all(src.startswith("data:image/jpeg;base64,") for src in page.images)
    by_path = {row["path"]["v"]: row for row in page.rows}
    assert by_path["washer/deleted.png"]["placeholder"] and by_path["washer/gone.png"]["placeholder"]
    thumb = by_path["washer/scratch/000.png"]["img"]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(thumb.split(",", 1)[1]))).convert("RGB"))
    assert pixels.shape[:2] == (64, 64)
    red = (pixels[..., 0] > 170) & (pixels[..., 1] < 110) & (pixels[..., 2] < 110)
    ys, xs = np.nonzero(red)
    # the strongest region [32, 40, 64, 60) of 128 px, at half scale: x 16-32, y 20-30 (not the weaker [0, 0, 8, 8))
    assert red.sum() > 20
    assert 14 <= xs.min() <= 19 and 28 <= xs.max() <= 33 and 18 <= ys.min() <= 23 and 26 <= ys.max() <= 31
    normal = by_path["washer/good/000.png"]["img"]
    calm = np.asarray(Image.open(io.BytesIO(base64.b64decode(normal.split(",", 1)[1]))).convert("RGB"))
    assert not ((calm[..., 0] > 170) & (calm[..., 1] < 110) & (calm[..., 2] < 110)).any()  # no box on normal


def test_a_one_pixel_region_in_a_corner_is_drawn_visibly(tmp_path: Path) -> None:
    image = tmp_path / "wide.png"
    Image.new("RGB", (600, 400), (90, 90, 90)).save(image)
    out = tmp_path / "r.jsonl"
    line = _new(image, tmp_path, verdict="anomalous", score=0.9, size=[600, 400])
    line["regions"] = [{"box": [599, 399, 600, 400], "score": 0.9}]
    out.write_text(json.dumps(line) + "\n")
    thumb = _parse(render_triage_html(out, thumb_px=60)).rows[0]["img"]
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(thumb.split(",", 1)[1]))).convert("RGB"))
    assert pixels.shape[:2] == (40, 60)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 120) & (pixels[..., 2] < 120)
    ys, xs = np.nonzero(red)
    assert red.any() and xs.min() >= 50 and ys.min() >= 30  # in the corner, widened to be seen


def test_strings_are_escaped_and_nothing_is_fetched(results: Path) -> None:
    html = render_triage_html(results)
    assert "<b>name</b>" not in html and '<i>"x"</i>' not in html and "<really>" not in html
    page = _parse(html)
    by_path = {row["path"]["v"]: row for row in page.rows}
    odd = by_path[f"fabric/{ODD}"]
    assert odd["path"]["text"] == f"fabric/{ODD}" and odd["type"]["v"] == '<i>"x"</i> & y'
    assert all(link.startswith(("#", "data:")) for link in page.links), [
        link[:40] for link in page.links if not link.startswith(("#", "data:"))
    ]


def test_old_lines_are_read_from_their_report_with_paths_relative_to_their_common_folder(
    tmp_path: Path,
) -> None:
    root = tmp_path / "old"
    first = _save(root / "a" / "000.png", True, 1)
    second = _save(root / "b" / "000.png", False, 2)
    out = tmp_path / "old.jsonl"
    region = {"x0": 32, "y0": 40, "x1": 64, "y1": 60, "score": 0.9, "area": 100}
    lines = [
        _old(first, "anomalous", 0.9, category="washer", defect_type="scratch", regions=[region]),
        _old(second, "normal", 0.2, category="washer", category_guessed=True),
        {
            "image": str(root / "c.png"),
            "error": {"type": "InvalidImageError", "message": "no"},
            "elapsed_ms": 1,
        },
    ]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    page = _parse(render_triage_html(out))
    by_path = {row["path"]["v"]: row for row in page.rows}
    assert set(by_path) == {"a/000.png", "b/000.png", "c.png"}
    assert by_path["a/000.png"]["type"]["v"] == "scratch" and by_path["a/000.png"]["score"]["text"] == "0.90"
    assert by_path["b/000.png"]["product"]["v"] == "washer" and by_path["c.png"]["verdict"]["v"] == "error"
    assert "old words." in "".join(page.text)


def test_a_line_with_unreadable_fields_is_an_error_row_not_a_crash(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    good = _save(tmp_path / "x.png", False, 1)
    out.write_text(
        json.dumps(_new(good, tmp_path))
        + "\n"
        + json.dumps(_new(tmp_path / "y.png", tmp_path, score="high", verdict="anomalous"))
        + "\n"
    )
    page = _parse(render_triage_html(out))
    bad = next(row for row in page.rows if row["path"]["v"] == "y.png")
    assert bad["verdict"]["v"] == "error" and "score" in "".join(page.text)


def test_the_page_grows_with_the_thumbnail_setting_and_stays_small(tmp_path: Path, results: Path) -> None:
    small = len(render_triage_html(results, thumb_px=48).encode())
    large = len(render_triage_html(results, thumb_px=128).encode())
    assert small < large
    # 6 readable images (4 of them in cards too): well under 10 KB of thumbnails per image at 128 px
    assert large < 40_000 + 6 * 10_000
    write_triage_html(results, tmp_path / "deep" / "page.html")
    assert (tmp_path / "deep" / "page.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    with pytest.raises(OutputWriteError):
        write_triage_html(results, tmp_path / "deep")  # a folder


def test_heatmaps_are_an_extra_column_when_asked(tmp_path: Path, results: Path) -> None:
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    heatmap = _save(tmp_path / "heat.png", False, 9)
    lines[1]["heatmap"] = str(heatmap)
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    plain = _parse(render_triage_html(results))
    with_heatmaps = _parse(render_triage_html(results, heatmaps=True))
    assert len(with_heatmaps.images) == len(plain.images) + 1
    assert with_heatmaps.placeholders == plain.placeholders + 7  # "no heatmap" for the others


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("verdict=anomalous&product=washer&sort=path", ["washer/deleted.png", "washer/hole/000.png", "washer/scratch/000.png"]),
        ("type=scratch", ["washer/scratch/000.png"]),
        ("verdict=uncertain&sort=score", ["other/u.png", "fabric/b.png"]),
        ("product=fabric&sort=-score", [f"fabric/{ODD}", "fabric/b.png"]),
        ("q=000&sort=-path", ["washer/scratch/000.png", "washer/hole/000.png", "washer/good/000.png"]),
    ],
)  # fmt: skip
def test_filters_and_sorting_run_in_headless_chromium(
    tmp_path: Path, results: Path, fragment: str, expected: list[str]
) -> None:
    page = tmp_path / "page.html"
    write_triage_html(results, page, thumb_px=32)
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"{page.as_uri()}#{fragment}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dom = _parse(done.stdout)
    assert dom.visible == expected
    assert f"{len(expected)} of 8 images shown" in "".join(dom.text)


def test_pictures_outside_the_allowed_roots_stay_out_of_the_page(results: Path, tmp_path: Path) -> None:
    from riad_agent.imaging import ImagePolicy

    fabric_only = ImagePolicy(allowed_roots=(tmp_path / "line" / "fabric",))
    page = _parse(render_triage_html(results, thumb_px=64, policy=fabric_only))
    by_path = {row["path"]["v"]: row for row in page.rows}
    assert by_path["washer/scratch/000.png"]["placeholder"]  # refused by the policy: a placeholder, no pixels
    assert by_path["fabric/b.png"]["img"].startswith("data:image/jpeg;base64,")
