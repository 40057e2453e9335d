"""Image loading: every source kind, the limits, and a typed error for every bad input."""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from riad_agent.errors import (
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidImageError,
    PathNotAllowedError,
    RiadError,
)
from riad_agent.imaging import ImagePolicy, load_image, pool_to_grid


def _png(mode: str = "RGB", size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new(
        mode, size, color=128 if mode in ("L", "I;16") else (200, 100, 50) if mode == "RGB" else 0
    ).save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 1-bit pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(16)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_all_source_kinds_decode_to_rgb(tmp_path: Path) -> None:
    data = _png()
    path = tmp_path / "part.png"
    path.write_bytes(data)
    b64 = base64.b64encode(_png(size=(300, 300))).decode()
    assert len(b64) > 512
    for source in (path, str(path), data, f"data:image/png;base64,{base64.b64encode(data).decode()}", b64):
        loaded = load_image(source)
        assert loaded.image.mode == "RGB"
        assert loaded.size in ((32, 24), (300, 300))
    assert load_image(data).sha256 == load_image(path).sha256


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "1"])
def test_other_modes_become_rgb(mode: str) -> None:
    loaded = load_image(_png(mode))
    assert loaded.image.mode == "RGB"
    assert loaded.original_mode == mode


def test_transparent_pixels_become_white() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(buffer, format="PNG")
    array = np.asarray(load_image(buffer.getvalue()).image)
    assert (array == 255).all()


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        (b"", InvalidImageError, "empty"),
        (b"hello, this is text", InvalidImageError, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, InvalidImageError, "corrupt|truncated|not an image"),
        ("http://example.com/a.png", PathNotAllowedError, "URLs are refused"),
        ("data:image/png,notbase64", InvalidImageError, "base64"),
        ("data:image/png;base64,@@@", InvalidImageError, "base64"),
        (12, InvalidImageError, "int"),
        ("   ", InvalidImageError, "empty"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", InvalidImageError, "SVG"),
    ],
)
def test_bad_sources_raise_typed_errors(source: object, error: type[RiadError], message: str) -> None:
    with pytest.raises(error, match=message):
        load_image(source)  # type: ignore[arg-type]


def test_truncated_png_is_corrupt() -> None:
    data = _png(size=(64, 64))
    with pytest.raises(InvalidImageError, match="corrupt|truncated|not an image"):
        load_image(data[: len(data) // 2])


def test_paths_missing_directory_and_zero_bytes(tmp_path: Path) -> None:
    with pytest.raises(ImageNotFoundError, match="no such image"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageNotFoundError, match="directory"):
        load_image(tmp_path)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match="0 bytes"):
        load_image(empty)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="decompression bomb.*400000000 pixels"):
        load_image(_bomb_png(20000, 20000))


def test_byte_and_pixel_limits() -> None:
    data = _png(size=(100, 100))
    with pytest.raises(ImageTooLargeError, match="max_image_bytes"):
        load_image(data, ImagePolicy(max_bytes=len(data) - 1))
    with pytest.raises(ImageTooLargeError, match="max_image_pixels"):
        load_image(data, ImagePolicy(max_pixels=9999))
    assert load_image(data, ImagePolicy(max_pixels=10000)).size == (100, 100)


def test_allowed_roots_confine_paths(tmp_path: Path) -> None:
    inside = tmp_path / "ok" / "a.png"
    inside.parent.mkdir()
    inside.write_bytes(_png())
    outside = tmp_path / "b.png"
    outside.write_bytes(_png())
    policy = ImagePolicy(allowed_roots=(tmp_path / "ok",))
    assert load_image(inside, policy).size == (32, 24)
    with pytest.raises(PathNotAllowedError, match="outside the allowed roots"):
        load_image(outside, policy)
    with pytest.raises(PathNotAllowedError):
        load_image(str(tmp_path / "ok" / ".." / "b.png"), policy)
    link = tmp_path / "ok" / "link.png"
    os.symlink(outside, link)
    with pytest.raises(PathNotAllowedError):
        load_image(link, policy)


def test_pool_to_grid_averages_cells() -> None:
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    pooled = pool_to_grid(values, 2, 2)
    assert pooled.tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert pool_to_grid(values, 4, 4).tolist() == values.tolist()


def test_base64_is_decided_by_content_not_length(tmp_path: Path) -> None:
    small = _png(size=(8, 8))
    short = base64.b64encode(small).decode()
    assert len(short) < 512
    assert load_image(short).size == (8, 8)  # short base64 is not taken for a path
    assert load_image(base64.urlsafe_b64encode(small).decode().rstrip("=")).size == (8, 8)
    with pytest.raises(InvalidImageError, match="neither base64 of an image"):
        load_image("x" * 600 + "!")  # not base64, too long for a file name: typed, no OSError
    with pytest.raises(InvalidImageError, match="neither base64 of an image"):
        load_image(str(tmp_path / ("a" * 300)))  # one name over 255 bytes
    with pytest.raises(InvalidImageError, match="neither base64 of an image"):
        load_image(base64.b64encode(b"plain text, not an image " * 40).decode())
    with pytest.raises(InvalidImageError, match="text/plain is not an image"):
        load_image("data:text/plain;base64," + base64.b64encode(small).decode())


def test_a_file_named_like_base64_is_still_a_path(tmp_path: Path) -> None:
    named = tmp_path / "QUJDREVGR0g"  # valid base64 ("ABCDEFGH"), but not of an image
    named.write_bytes(_png())
    assert load_image(str(named)).size == (32, 24)


def test_fifo_and_devices_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # nobody writes: a blocking open or read would hang forever
    with pytest.raises(ImageNotFoundError, match="not a regular file"):
        load_image(fifo)
    with pytest.raises(ImageNotFoundError, match="not a regular file"):
        load_image("/dev/zero")  # endless: read without a cap it eats all memory


def test_a_file_larger_than_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.png"
    with sparse.open("wb") as handle:
        handle.write(_png())
        handle.truncate(1 << 40)  # 1 TiB, sparse
    with pytest.raises(ImageTooLargeError, match="max_image_bytes"):
        load_image(sparse)


def test_symlink_swap_race_never_reads_outside_the_root(tmp_path: Path) -> None:
    """A folder inside the root is swapped for a symlink to an outside folder while reads run."""
    import threading

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "real" / "part.png").write_bytes(_png(size=(8, 8)))
    (outside / "part.png").write_bytes(_png(size=(9, 9)))
    link = root / "link"
    os.symlink(outside, link)
    swapped = root / "sub"
    os.rename(root / "real", swapped)
    stop = threading.Event()

    def swap() -> None:  # sub: the real folder, then the symlink, then the folder again ...
        while not stop.is_set():
            os.rename(swapped, root / "real")
            os.rename(link, swapped)
            os.rename(swapped, link)
            os.rename(root / "real", swapped)

    policy = ImagePolicy(allowed_roots=(root,))
    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    sizes: dict[tuple[int, int] | str, int] = {}
    try:
        for _ in range(3000):
            try:
                key: tuple[int, int] | str = load_image(str(swapped / "part.png"), policy).size
            except (PathNotAllowedError, ImageNotFoundError) as exc:
                key = type(exc).__name__
            sizes[key] = sizes.get(key, 0) + 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert (9, 9) not in sizes, sizes  # never the outside file
    assert sizes.get((8, 8), 0) > 0, sizes


def test_exif_orientation_is_applied_so_the_image_is_upright() -> None:
    # a camera stored a 40x20 landscape frame with "rotate 90 degrees clockwise to view" (orientation 6)
    stored = Image.new("RGB", (40, 20), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the stored frame's left
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif, quality=95)
    loaded = load_image(buffer.getvalue(), ImagePolicy())
    assert loaded.image.size == (20, 40)
    top = np.asarray(loaded.image)[:5].mean(axis=(0, 1))
    assert top[0] > 200 and top[1] < 60  # the left strip is now at the top
