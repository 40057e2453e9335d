"""Fuzzing the input boundaries: every rejection is typed, nothing crashes.

Bytes and strings go into ``load_image``; JSON goes into ``InspectionRequest`` and the reasoner
service's ``WireRequest`` (and, when it validates, through ``decode_input``). A rejection must be a
:class:`RiadError` (or pydantic's ``ValidationError`` for schema validation); anything else fails.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from riad_agent.errors import InvalidRequestError, RiadError
from riad_agent.imaging import ImagePolicy, load_image
from riad_agent.inspector import parse_request
from riad_agent.schemas import InspectionRequest
from riad_agent.serving.wire import WireLimits, WireRequest, decode_input

ROOT = Path(__file__).resolve().parent / "no-such-root"  # paths are confined to a folder that does not exist
POLICY = ImagePolicy(max_bytes=200_000, max_pixels=1_000_000, allowed_roots=(ROOT,))
LIMITS = WireLimits(max_body_bytes=1_000_000, max_image_pixels=1_000_000)
FAST = settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def _png(width: int, height: int, color: tuple[int, int, int] = (1, 2, 3)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its (tiny) data cannot fill: a decompression-bomb shape."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data = zlib.compress(b"\x00" * 16)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"\x00\x00\x00\x00IEND\xaeB`\x82"


SEEDS = [_png(8, 8), _png(3, 1), _png_claiming(60_000, 60_000), _png_claiming(0, 5), b"GIF89a", b"BM", b"\xff\xd8\xff"]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real or crafted image with random bytes flipped, cut or appended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return bytes(data + draw(st.binary(max_size=64)))


def _load_or_typed(value: str | bytes) -> None:
    try:
        loaded = load_image(value, POLICY)
    except RiadError:
        return
    assert loaded.image.mode == "RGB" and loaded.image.width * loaded.image.height <= POLICY.max_pixels


@FAST
@given(st.one_of(st.binary(max_size=512), mutated_images()))
def test_load_image_bytes_never_crash(data: bytes) -> None:
    _load_or_typed(data)


@settings(max_examples=600, deadline=None, database=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.builds(lambda b: base64.b64encode(b).decode(), mutated_images()),
        st.builds(lambda b: "data:image/png;base64," + base64.b64encode(b).decode(), mutated_images()),
        st.sampled_from(["http://x/y.png", "file:///etc/passwd", "../../etc/passwd", "/dev/zero", "data:,x", " "]),
    )
)
def test_load_image_strings_never_crash(text: str) -> None:
    _load_or_typed(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
REQUEST_KEYS = ["image", "category", "references", "question", "options"]
OPTION_KEYS = ["latent_steps", "latent_tokens", "inject_patches", "use_knowledge", "seed", "knowledge_k"]


@st.composite
def request_like(draw: st.DrawFn, keys: list[str], nested: dict[str, list[str]]) -> dict[str, Any]:
    """Dicts with mostly the right keys and random values (some values of the right shape)."""
    out: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(keys), unique=True)):
        if key in nested and draw(st.booleans()):
            out[key] = {k: draw(json_values) for k in draw(st.lists(st.sampled_from(nested[key]), unique=True))}
        else:
            out[key] = draw(json_values)
    if draw(st.booleans()):
        out[draw(st.text(max_size=8))] = draw(json_values)
    return out


@FAST
@given(st.one_of(json_values, request_like(REQUEST_KEYS, {"options": OPTION_KEYS, "question": ["text", "options"]})))
def test_inspection_request_json_rejections_are_typed(value: Any) -> None:
    text = json.dumps(value, allow_nan=True)
    with contextlib.suppress(ValidationError):
        InspectionRequest.model_validate_json(text)
    try:
        parse_request(value)
    except InvalidRequestError as exc:
        assert exc.message.startswith("invalid request field")


WIRE_KEYS = list(WireRequest.model_fields)


@st.composite
def wire_like(draw: st.DrawFn) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": base64.b64encode(draw(mutated_images())).decode(),
        "question": {"text": "Defect?", "options": {"A": "Yes.", "B": "No."}},
    }
    if draw(st.booleans()):
        base["patch_prior"] = draw(st.lists(st.lists(st.floats(allow_nan=True), min_size=1, max_size=4), max_size=4))
    if draw(st.booleans()):
        base["templates"] = [base64.b64encode(draw(mutated_images())).decode()]
    base.update(draw(request_like(WIRE_KEYS, {"question": ["text", "options"]})) if draw(st.booleans()) else {})
    return base


@FAST
@given(st.one_of(json_values, wire_like()))
def test_wire_request_json_rejections_are_typed(value: Any) -> None:
    try:
        body = WireRequest.model_validate_json(json.dumps(value, allow_nan=True))
    except ValidationError:
        return
    try:
        decoded = decode_input(body, LIMITS)
    except RiadError:
        return
    assert decoded.image.mode == "RGB"


@pytest.mark.parametrize("blob", [b"\x00" * 10, b"\x89PNG\r\n\x1a\n", _png_claiming(60_000, 60_000)])
def test_known_bad_images_are_typed(blob: bytes) -> None:
    with pytest.raises(RiadError):
        load_image(blob, POLICY)


def test_path_with_nul_byte_is_typed() -> None:
    with pytest.raises(RiadError):
        load_image("part\x00.png", POLICY)
