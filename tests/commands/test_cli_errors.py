"""``riad inspect`` on bad input: non-zero exit and one typed line on stderr, never a traceback."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

RIAD = str(Path(sys.executable).with_name("riad"))


def _bomb(path: Path, width: int = 20000, height: int = 20000) -> None:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def _cases(tmp: Path) -> dict[str, tuple[str, str]]:
    corrupt = tmp / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    empty = tmp / "empty.png"
    empty.write_bytes(b"")
    text = tmp / "notes.txt"
    text.write_text("this is not an image\n")
    bomb = tmp / "bomb.png"
    _bomb(bomb)
    return {
        "corrupt": (str(corrupt), "InvalidImageError"),
        "zero-byte": (str(empty), "InvalidImageError"),
        "directory": (str(tmp), "ImageNotFoundError"),
        "bomb": (str(bomb), "ImageTooLargeError"),
        "text": (str(text), "InvalidImageError"),
        "missing": (str(tmp / "nope.png"), "ImageNotFoundError"),
    }


@pytest.mark.parametrize("case", ["corrupt", "zero-byte", "directory", "bomb", "text", "missing"])
def test_inspect_bad_input_is_one_typed_line(tmp_path: Path, case: str) -> None:
    source, error = _cases(tmp_path)[case]
    result = subprocess.run(
        [RIAD, "inspect", source, "--no-reasoner", "--no-knowledge"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "RIAD_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()  # exactly one line: no progress residue, no traceback
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{error}: ")
    assert "Traceback" not in result.stderr


def test_bad_option_syntax_is_typed(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    result = subprocess.run(
        [RIAD, "inspect", str(image), "--question", "Defect?", "--option", "Yes"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "RIAD_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("InvalidRequestError: --option must look like A=text")


def test_a_question_without_its_options_says_how_to_give_them(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    result = subprocess.run(
        [RIAD, "inspect", str(image), "--question", "What is wrong?"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "RIAD_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "InvalidRequestError: --question needs its options, at least two: "
        "--option 'A=Crack' --option 'B=Scratch'"
    )


def test_version_and_help() -> None:
    result = subprocess.run([RIAD, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("riad-agent ")


def test_option_refused_by_a_contract_is_typed(tmp_path: Path) -> None:
    result = subprocess.run(
        [RIAD, "triage", str(tmp_path), "--concurrency", "0", "--out", str(tmp_path / "r.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "RIAD_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "InvalidRequestError: invalid value for concurrency: Input should be greater than or equal to 1"
    ]
    assert not (tmp_path / "r.jsonl").exists()


def test_inspect_a_query_below_the_minimum_size_is_one_typed_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from riad_agent.cli import app

    tiny, reference = tmp_path / "tiny.png", tmp_path / "ref.png"
    Image.new("RGB", (20, 20), (90, 90, 90)).save(tiny)
    Image.new("RGB", (128, 128), (90, 90, 90)).save(reference)
    monkeypatch.setenv("RIAD_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(
        app, ["inspect", str(tiny), "--reference", str(reference), "--no-reasoner", "--no-knowledge"]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("InvalidImageError: "), result.stderr
    assert "32 px minimum side" in lines[0]
