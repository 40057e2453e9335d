"""Fuzzing the input boundaries: every rejection is one typed error, nothing crashes or hangs.

Bytes and strings go into ``load_image`` with paths confined to a real folder full of traps (a
FIFO, links to ``/dev/zero`` and out of the root, names too long, a symlink loop, a sparse 1 TiB
file); JSON goes into ``parse_request`` and, as HTTP bodies, into the reasoner service. The same
traps then go through every entry point: the CLI, the LangChain and llama-index tools and the MCP
server. A rejection must be a :class:`RiadError` subclass (for tools: error text that names one,
returned to the model, no exception), within a bounded time (a watchdog, not a speed test).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import riad_agent.errors
from riad_agent.errors import InvalidRequestError, RiadError
from riad_agent.imaging import ImagePolicy, load_image
from riad_agent.inspector import parse_request

T = TypeVar("T")

#: Every path the fuzzers make lies under this real folder (built once, removed at the end).
ROOT = Path(tempfile.mkdtemp(prefix="riad-fuzz-")).resolve()
POLICY = ImagePolicy(max_bytes=200_000, max_pixels=1_000_000, allowed_roots=(ROOT / "root",))
FAST = settings(
    max_examples=1200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
#: A watchdog, not a speed target: a call that blocks (a FIFO read, /dev/zero) never returns at all.
HANG_S = 60.0


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


SEEDS = [
    _png(8, 8),
    _png(3, 1),
    _png_claiming(60_000, 60_000),
    _png_claiming(0, 5),
    b"GIF89a",
    b"BM",
    b"\xff\xd8\xff",
]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real or crafted image with random bytes flipped, cut or appended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return bytes(data + draw(st.binary(max_size=64)))


def bounded(call: Callable[[], T], limit_s: float = HANG_S) -> T:
    """``call()`` on a watchdog thread: fails the test when it has not returned after ``limit_s``."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed back to the test below
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"no answer after {limit_s} s: the call blocks"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def build_traps(base: Path) -> dict[str, str]:
    """A root folder of traps beside an outside folder; name -> path string."""
    root, outside = base / "root", base / "outside"
    root.mkdir(parents=True, exist_ok=True)
    outside.mkdir(exist_ok=True)
    (root / "good.png").write_bytes(_png(40, 40))
    (outside / "secret.png").write_bytes(_png(41, 41))
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image\n")
    (root / "folder").mkdir(exist_ok=True)
    long_ok = root / ("n" * 250 + ".png")  # 254 bytes: a legal name
    long_ok.write_bytes(_png(42, 42))
    with (root / "sparse.png").open("wb") as handle:
        handle.truncate(1 << 40)
    links = {
        "fifo": root / "pipe.png",
        "dev_zero": root / "zero.png",
        "outside_link": root / "secret.png",
        "folder_link": root / "elsewhere",
        "loop": root / "loop.png",
        "dangling": root / "dangling.png",
    }
    if not links["fifo"].exists():
        os.mkfifo(links["fifo"])
        os.symlink("/dev/zero", links["dev_zero"])
        os.symlink(outside / "secret.png", links["outside_link"])
        os.symlink(outside, links["folder_link"])
        os.symlink(links["loop"], links["loop"])
        os.symlink(root / "gone.png", links["dangling"])
    return {
        "good": str(root / "good.png"),
        "long_ok": str(long_ok),
        "empty": str(root / "empty.png"),
        "text": str(root / "notes.txt"),
        "folder": str(root / "folder"),
        "sparse": str(root / "sparse.png"),
        "missing": str(root / "missing.png"),
        "name_too_long": str(root / ("n" * 300 + ".png")),
        "path_too_long": str(root / "/".join(["d" * 200] * 30)),
        "not_base64": "x" * 700 + "!",
        "dotdot": str(root / ".." / "outside" / "secret.png"),
        "outside": str(outside / "secret.png"),
        "plain_dev_zero": "/dev/zero",
        "text_data_uri": "data:text/plain;base64," + base64.b64encode(_png(8, 8)).decode(),
        **{name: str(path) for name, path in links.items()},
        "through_folder_link": str(links["folder_link"] / "secret.png"),
    }


TRAPS = build_traps(ROOT)
LOADABLE = {"good", "long_ok"}


@pytest.fixture(scope="module", autouse=True)
def _remove_root() -> Iterator[None]:
    yield
    shutil.rmtree(ROOT, ignore_errors=True)


def _load_or_typed(value: str | bytes) -> None:
    try:
        loaded = bounded(lambda: load_image(value, POLICY))
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
        st.text(max_size=1200),
        st.builds(lambda b: base64.b64encode(b).decode(), mutated_images()),
        st.builds(lambda b: "data:image/png;base64," + base64.b64encode(b).decode(), mutated_images()),
        st.sampled_from(
            ["http://x/y.png", "file:///etc/passwd", "../../etc/passwd", "/dev/zero", "data:,x", " "]
        ),
        st.sampled_from(sorted(TRAPS.values())),
        st.builds(lambda a, b: str(ROOT / "root" / a / b), st.text(max_size=40), st.text(max_size=300)),
    )
)
def test_load_image_strings_never_crash(text: str) -> None:
    _load_or_typed(text)


def _expected(name: str) -> str:
    """The typed error each trap must raise (in the confined policy)."""
    return {
        "empty": "InvalidImageError",
        "text": "InvalidImageError",
        "folder": "ImageNotFoundError",
        "sparse": "ImageTooLargeError",
        "missing": "ImageNotFoundError",
        "name_too_long": "InvalidImageError",
        "path_too_long": "InvalidImageError",
        "not_base64": "InvalidImageError",
        "dotdot": "PathNotAllowedError",
        "outside": "PathNotAllowedError",
        "plain_dev_zero": "PathNotAllowedError",
        "text_data_uri": "InvalidImageError",
        "fifo": "ImageNotFoundError",
        "dev_zero": "PathNotAllowedError",
        "outside_link": "PathNotAllowedError",
        "folder_link": "PathNotAllowedError",
        "loop": "ImageNotFoundError",
        "dangling": "ImageNotFoundError",
        "through_folder_link": "PathNotAllowedError",
    }[name]


TRAP_NAMES = sorted(set(TRAPS) - LOADABLE)
_TYPED_LINE = re.compile(r"(?:^|: )([A-Za-z]+Error): ")


def typed_name(text: str) -> str:
    """The riad error class a one-line message names (fails when it names none)."""
    match = _TYPED_LINE.search(text)
    assert match, f"no typed error in {text!r}"
    error = getattr(riad_agent.errors, match.group(1), None)
    assert isinstance(error, type) and issubclass(error, RiadError), text
    return match.group(1)


@pytest.mark.parametrize("name", TRAP_NAMES)
def test_each_trap_is_one_typed_error(name: str) -> None:
    with pytest.raises(RiadError) as caught:
        bounded(lambda: load_image(TRAPS[name], POLICY))
    assert type(caught.value).__name__ == _expected(name), caught.value


@pytest.mark.parametrize("name", sorted(LOADABLE))
def test_good_files_in_the_root_load(name: str) -> None:
    assert load_image(TRAPS[name], POLICY).image.mode == "RGB"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
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
            out[key] = {
                k: draw(json_values) for k in draw(st.lists(st.sampled_from(nested[key]), unique=True))
            }
        else:
            out[key] = draw(json_values)
    if draw(st.booleans()):
        out[draw(st.text(max_size=8))] = draw(json_values)
    return out


@FAST
@given(
    st.one_of(
        json_values, request_like(REQUEST_KEYS, {"options": OPTION_KEYS, "question": ["text", "options"]})
    )
)
def test_inspection_request_json_rejections_are_typed(value: Any) -> None:
    try:
        parse_request(json.loads(json.dumps(value, allow_nan=True)))
    except InvalidRequestError as exc:
        assert exc.message.startswith("invalid request field")


# -- the reasoner service over HTTP: every bad body is a typed error code ----------------------


@st.composite
def wire_like(draw: st.DrawFn) -> dict[str, Any]:
    from riad_agent.serving.wire import WireRequest

    base: dict[str, Any] = {
        "image": base64.b64encode(draw(mutated_images())).decode(),
        "question": {"text": "Defect?", "options": {"A": "Yes.", "B": "No."}},
    }
    if draw(st.booleans()):
        base["patch_prior"] = draw(
            st.lists(st.lists(st.floats(allow_nan=True), min_size=1, max_size=4), max_size=4)
        )
    if draw(st.booleans()):
        base["templates"] = [base64.b64encode(draw(mutated_images())).decode()]
    if draw(st.booleans()):
        base.update(draw(request_like(list(WireRequest.model_fields), {"question": ["text", "options"]})))
    return base


@pytest.fixture(scope="module")
def reasoner_service() -> Iterator[Any]:
    from fastapi.testclient import TestClient
    from support.fakes import FakeReasoner

    from riad_agent.serving.service import ServiceConfig, create_app
    from riad_agent.serving.wire import WireLimits

    limits = WireLimits(max_body_bytes=1_000_000, max_image_pixels=1_000_000)
    app = create_app(FakeReasoner(), ServiceConfig(limits=limits, max_queue=64))
    with TestClient(app) as client:
        yield client


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, wire_like(), st.binary(max_size=64)))
def test_reasoner_service_bodies_are_answered_or_typed(reasoner_service: Any, value: Any) -> None:
    body = value if isinstance(value, bytes) else json.dumps(value, allow_nan=True).encode()
    response = bounded(lambda: reasoner_service.post("/v1/reason", content=body))
    if response.status_code == 200:
        return
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    codes = {
        cls.code
        for cls in vars(riad_agent.errors).values()
        if isinstance(cls, type) and issubclass(cls, RiadError)
    }
    assert response.json()["error"]["code"] in codes, response.text


@pytest.mark.parametrize("blob", [b"\x00" * 10, b"\x89PNG\r\n\x1a\n", _png_claiming(60_000, 60_000)])
def test_known_bad_images_are_typed(blob: bytes) -> None:
    with pytest.raises(RiadError):
        load_image(blob, POLICY)


def test_path_with_nul_byte_is_typed() -> None:
    with pytest.raises(RiadError):
        load_image("part\x00.png", POLICY)


# -- the same traps through every entry point ------------------------------------------------------


@pytest.fixture(scope="module")
def confined_inspector() -> Any:
    from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner

    from riad_agent.components import build_components
    from riad_agent.inspector import Inspector
    from riad_agent.settings import Settings

    settings = Settings(data_dir=ROOT / "data", allowed_roots=[ROOT / "root"])
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    return Inspector(components=components)


@pytest.mark.parametrize("name", TRAP_NAMES)
def test_langchain_tool_returns_each_trap_as_typed_text(confined_inspector: Any, name: str) -> None:
    from riad_agent.tools.langchain import inspection_tool

    tool = inspection_tool(inspector=confined_inspector)
    call = {"name": tool.name, "args": {"image": TRAPS[name]}, "id": "1", "type": "tool_call"}
    message = bounded(lambda: tool.invoke(call))
    assert message.status == "error" and typed_name(message.content) == _expected(name), message.content
    with_reference = {**call, "args": {"image": TRAPS["good"], "references": [TRAPS[name]]}}
    message = bounded(lambda: tool.invoke(with_reference))
    assert message.status == "error" and typed_name(message.content) == _expected(name), message.content


async def test_llamaindex_tool_returns_each_trap_as_typed_text(confined_inspector: Any) -> None:
    from riad_agent.tools.llamaindex import inspection_function_tool

    tool = inspection_function_tool(inspector=confined_inspector)
    for name in TRAP_NAMES:
        output = await tool.acall(image=TRAPS[name])
        text = output.blocks[0].text
        assert text.startswith("Error: ") and typed_name(text) == _expected(name), (name, text)


async def test_mcp_returns_each_trap_as_one_typed_line(confined_inspector: Any) -> None:
    from mcp.shared.memory import create_connected_server_and_client_session

    from riad_agent.settings import Settings
    from riad_agent.tools.mcp_server import build_mcp_server

    server = build_mcp_server(Settings(data_dir=ROOT / "data"), confined_inspector)
    async with create_connected_server_and_client_session(server) as client:
        for name in TRAP_NAMES:
            result = await client.call_tool("inspect_industrial_image", {"image": TRAPS[name]})
            text = result.content[0].text  # type: ignore[union-attr]
            assert result.isError and typed_name(text) == _expected(name), (name, text)


def _cli_expected(name: str) -> str:
    """The CLI confines no paths (a person's own files): what leaves the root is read or refused as a file."""
    unconfined = {
        "dotdot": None,
        "outside": None,
        "outside_link": None,
        "through_folder_link": None,
        "dev_zero": "ImageNotFoundError",
        "plain_dev_zero": "ImageNotFoundError",
        "folder_link": "ImageNotFoundError",
    }
    return unconfined.get(name, _expected(name)) or ""


@pytest.mark.parametrize("name", TRAP_NAMES)
def test_cli_prints_each_trap_as_one_typed_line(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from riad_agent.cli import app

    expected = _cli_expected(name)
    if not expected:
        pytest.skip("outside any root the CLI reads a person's own files")
    monkeypatch.setenv("RIAD_DATA_DIR", str(ROOT / "cli-data"))
    result = bounded(
        lambda: CliRunner().invoke(app, ["inspect", TRAPS[name], "--no-reasoner", "--no-knowledge", "--json"])
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{expected}: "), lines
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_symlink_swap_race_through_the_tool(confined_inspector: Any) -> None:
    """A folder in the root swapped for a link out of it while the tool runs: never the outside image."""
    from riad_agent.tools.langchain import inspection_tool

    base = ROOT / "root" / "race"
    real, link, swapped = base / "real", base / "link", base / "sub"
    real.mkdir(parents=True)
    (real / "part.png").write_bytes(_png(64, 64, (200, 200, 200)))
    os.symlink(ROOT / "outside", link)
    os.rename(real, swapped)
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(swapped, real)
            os.rename(link, swapped)
            os.rename(swapped, link)
            os.rename(real, swapped)

    tool = inspection_tool(inspector=confined_inspector)
    call = {"name": tool.name, "args": {"image": str(swapped / "part.png")}, "id": "1", "type": "tool_call"}
    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    outcomes: dict[str, int] = {}
    try:
        for _ in range(150):
            message = bounded(lambda: tool.invoke(call))
            key = (
                typed_name(message.content) if message.status == "error" else str(message.artifact.image_size)
            )
            outcomes[key] = outcomes.get(key, 0) + 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert "(41, 41)" not in outcomes, outcomes  # the outside secret was never inspected
    assert set(outcomes) <= {"(64, 64)", "PathNotAllowedError", "ImageNotFoundError", "InvalidImageError"}, (
        outcomes
    )
