"""Loading and validating images from every source an agent may send, with limits and typed errors.

An image arrives as a path, raw bytes, base64 or a data URI. ``load_image`` decodes it within the
byte and pixel budget of an :class:`ImagePolicy`, refuses paths outside the allowed roots and URLs
unless enabled, and returns an RGB :class:`LoadedImage`. Nothing here ever lets a Pillow exception out.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from riad_agent.errors import (
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidRequestError,
    PathNotAllowedError,
)

_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I
)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
_PNM_MAGIC = re.compile(rb"^P[1-7]\s")
_MIN_IMAGE_BYTES = 24  # no PNG, JPEG, GIF, BMP, TIFF or WebP file is shorter
_MAX_NAME_BYTES = 255  # the longest file name (one path component) common file systems allow
_MAX_PATH_BYTES = 4096
_READ_CHUNK = 1 << 20
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


@dataclass(frozen=True)
class ImagePolicy:
    """Limits and permissions for image inputs."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40_000_000
    allowed_roots: tuple[Path, ...] | None = None
    allow_urls: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> ImagePolicy:
        roots = getattr(settings, "allowed_roots", None)
        return cls(
            max_bytes=int(getattr(settings, "max_image_bytes", cls.max_bytes)),
            max_pixels=int(getattr(settings, "max_image_pixels", cls.max_pixels)),
            allowed_roots=None if roots is None else tuple(Path(r) for r in roots),
            allow_urls=bool(getattr(settings, "allow_urls", False)),
        )


@dataclass(frozen=True)
class LoadedImage:
    """A decoded RGB image and where it came from."""

    image: Image.Image
    source: str
    sha256: str
    original_mode: str
    format: str | None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def _describe(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value if len(value) <= 80 else value[:77] + "..."


def read_source(value: str | bytes | Path, policy: ImagePolicy) -> tuple[bytes, str]:
    """Return the encoded bytes behind an image source and a short label for messages.

    A string is base64 when its content says so (valid base64 of bytes that begin like an image),
    whatever its length; otherwise it is a file path, or neither when no file name could be that long.
    """
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _check_bytes(data, "<bytes>", policy), "<bytes>"
    if not isinstance(value, str):
        raise InvalidImageError(
            f"an image must be a path, bytes, base64 or a data URI, not {type(value).__name__}"
        )
    text = value.strip()
    if not text:
        raise InvalidImageError("the image reference is empty: give a path, bytes, base64 or a data URI")
    match = _DATA_URI.match(text)
    if match:
        return _read_data_uri(text, match, policy), "<data URI>"
    if _URL.match(text):
        if not policy.allow_urls:
            raise PathNotAllowedError(
                f"URLs are refused ({_describe(text)}): send the image as a path, bytes or base64, "
                "or enable allow_urls on the server"
            )
        raise PathNotAllowedError("fetching URLs is not supported by this build; download the image first")
    if "\x00" in text:
        raise InvalidImageError(f"image path {_describe(text)!r} contains a NUL byte")
    inline = _base64_image(text, policy)
    if inline is not None:
        return _check_bytes(inline, "<base64>", policy), "<base64>"
    if not _could_be_path(text):
        raise InvalidImageError(
            f"the image reference ({len(text)} characters) is neither base64 of an image (PNG, JPEG, ...) "
            f"nor a file path (a file name has at most {_MAX_NAME_BYTES} bytes, a path {_MAX_PATH_BYTES})"
        )
    return _read_path(text, policy), text


def _read_data_uri(text: str, match: re.Match[str], policy: ImagePolicy) -> bytes:
    mime = (match.group("mime") or "").lower()
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise InvalidImageError(
            f"a data URI of type {mime} is not an image: send 'data:image/png;base64,...'"
        )
    if not match.group("b64"):
        raise InvalidImageError("data URIs must be base64-encoded ('data:image/png;base64,...')")
    payload = text[match.end() :]
    _check_base64_length(payload, "<data URI>", policy)
    return _check_bytes(_b64decode(payload, "data URI"), "<data URI>", policy)


def _check_base64_length(text: str, label: str, policy: ImagePolicy) -> None:
    """Refuse base64 whose decoded size would exceed the byte budget, before decoding it."""
    if len(text) * 3 // 4 > policy.max_bytes + 3:  # cheap: whitespace only lengthens the text
        encoded = sum(1 for char in text if not char.isspace())
        if encoded * 3 // 4 > policy.max_bytes + 3:
            raise ImageTooLargeError(
                f"{label} holds over {policy.max_bytes} bytes, the limit (max_image_bytes)"
            )


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` begins like an encoded raster image (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM)."""
    if len(data) < _MIN_IMAGE_BYTES:
        return False
    if data.startswith(b"RIFF"):
        return data[8:12] == b"WEBP"
    return data.startswith(_IMAGE_MAGIC) or _PNM_MAGIC.match(data[:3]) is not None


def _base64_image(text: str, policy: ImagePolicy) -> bytes | None:
    """The bytes of ``text`` when it is base64 of an image, else None (then it may be a path)."""
    if not _BASE64_CHARS.match(text):
        return None
    try:
        head = _b64decode(text[:64], "base64 string") if len(text) > 64 else None
    except InvalidImageError:
        head = None
    if head is not None and not looks_like_image(head):
        return None  # decide on the first bytes before decoding a long string
    try:
        _check_base64_length(text, "<base64>", policy)
        data = _b64decode(text, "base64 string")
    except ImageTooLargeError:
        raise
    except InvalidImageError:
        return None
    return data if looks_like_image(data) else None


def _could_be_path(text: str) -> bool:
    """Whether a file system could hold a path this long (each name <= 255 bytes, all <= 4096)."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) > _MAX_PATH_BYTES:
        return False
    return all(len(part) <= _MAX_NAME_BYTES for part in encoded.replace(b"\\", b"/").split(b"/"))


def _b64decode(text: str, what: str) -> bytes:
    cleaned = "".join(text.split())
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError(f"the {what} is not valid base64: {exc}") from exc


def _check_bytes(data: bytes, label: str, policy: ImagePolicy) -> bytes:
    if len(data) == 0:
        raise InvalidImageError(f"{label} is empty (0 bytes)")
    if len(data) > policy.max_bytes:
        raise ImageTooLargeError(
            f"{label} is {len(data)} bytes, over the limit of {policy.max_bytes} bytes (max_image_bytes)"
        )
    return data


def _read_path(text: str, policy: ImagePolicy) -> bytes:
    """Open the file, then check what was opened (allowed roots, a regular file), then read from it.

    The checks are on the opened descriptor, so swapping a folder for a symlink between check and
    read cannot make it read a file outside the roots; a FIFO or a device is refused without reading.
    """
    label = _describe(text)
    try:
        path = Path(text).expanduser().absolute()
        roots = _resolved_roots(policy)
        if roots is not None and not _inside(path.resolve(strict=False), roots):  # before touching the file
            raise PathNotAllowedError(
                f"image path {label} is outside the allowed roots: {_roots_text(policy)}"
            )
        fd = os.open(path, _OPEN_FLAGS)
    except (RuntimeError, ValueError) as exc:  # '~nobody/...' (no home), a name the OS cannot encode
        raise ImageNotFoundError(f"cannot resolve image path {label}: {exc}") from exc
    except FileNotFoundError as exc:
        raise ImageNotFoundError(f"no such image file: {label}") from exc
    except PermissionError as exc:
        raise ImageNotFoundError(f"cannot read {label}: permission denied") from exc
    except OSError as exc:
        raise ImageNotFoundError(f"cannot open {label}: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if roots is not None and not _inside(_opened_path(fd, path, info), roots):
            raise PathNotAllowedError(
                f"image path {label} is outside the allowed roots: {_roots_text(policy)}"
            )
        if stat.S_ISDIR(info.st_mode):
            raise ImageNotFoundError(f"{label} is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise ImageNotFoundError(f"{label} is not a regular file (a FIFO, socket or device)")
        if info.st_size > policy.max_bytes:
            raise ImageTooLargeError(
                f"{label} is {info.st_size} bytes, over the limit of {policy.max_bytes} bytes (max_image_bytes)"
            )
        data = _read_capped(fd, label, policy.max_bytes)
    finally:
        os.close(fd)
    return _check_bytes(data, label, policy)


def _read_capped(fd: int, label: str, max_bytes: int) -> bytes:
    """At most ``max_bytes`` from ``fd``; ImageTooLargeError when there is more (a file still growing)."""
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = os.read(fd, min(_READ_CHUNK, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ImageTooLargeError(f"{label} is over the limit of {max_bytes} bytes (max_image_bytes)")
    except OSError as exc:
        raise ImageNotFoundError(f"cannot read {label}: {exc.strerror or exc}") from exc
    return b"".join(chunks)


def confined_path(text: str | Path, policy: ImagePolicy, what: str = "path") -> Path:
    """``text`` as an absolute, resolved path; :class:`PathNotAllowedError` when it lies outside the
    policy's allowed roots (a folder to triage, a results file to write)."""
    label = _describe(str(text))
    try:
        path = Path(text).expanduser().absolute().resolve(strict=False)
    except (RuntimeError, ValueError, OSError) as exc:
        raise InvalidRequestError(f"cannot resolve {what} {label}: {exc}") from exc
    roots = _resolved_roots(policy)
    if roots is not None and not _inside(path, roots):
        raise PathNotAllowedError(f"{what} {label} is outside the allowed roots: {_roots_text(policy)}")
    return path


def _resolved_roots(policy: ImagePolicy) -> tuple[Path, ...] | None:
    if policy.allowed_roots is None:
        return None
    return tuple(Path(root).expanduser().resolve(strict=False) for root in policy.allowed_roots)


def _roots_text(policy: ImagePolicy) -> str:
    return ", ".join(str(r) for r in policy.allowed_roots or ()) or "(none)"


def _inside(path: Path | None, roots: tuple[Path, ...]) -> bool:
    return path is not None and any(path.is_relative_to(root) for root in roots)


def _opened_path(fd: int, path: Path, info: os.stat_result) -> Path | None:
    """The real path of the file open on ``fd`` (from /proc where there is one).

    Elsewhere: the real path of ``path``, accepted only when it names the very file that is open.
    """
    with contextlib.suppress(OSError):
        return Path(Path(f"/proc/self/fd/{fd}").readlink().as_posix().removesuffix(" (deleted)"))
    real = path.resolve(strict=False)
    try:
        now = real.stat()
    except OSError:
        return None
    return real if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino) else None


def decode_image(data: bytes, label: str, policy: ImagePolicy) -> tuple[Image.Image, str | None, str]:
    """Decode bytes to an RGB image within the pixel budget; returns (image, format, original mode)."""
    if not data.startswith(_IMAGE_MAGIC) and b"<svg" in data[:512].lower():
        raise InvalidImageError(f"{label} is an SVG; send a raster image (PNG, JPEG, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
                fmt = probe.format
                if width <= 0 or height <= 0:
                    raise InvalidImageError(f"{label} has an empty size {width}x{height}")
                if width * height > policy.max_pixels:
                    raise ImageTooLargeError(
                        f"{label} is {width}x{height} = {width * height} pixels, over the limit of "
                        f"{policy.max_pixels} (max_image_pixels); resize it first"
                    )
                probe.load()
                mode = probe.mode
                # a camera's EXIF orientation is applied, so the image and every box are upright
                image = _to_rgb(ImageOps.exif_transpose(probe))
    except (InvalidImageError, ImageTooLargeError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{label} is a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError(
            f"{label} is not an image Pillow can read (PNG, JPEG, BMP, TIFF, WebP ...)"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
        raise InvalidImageError(f"{label} is corrupt or truncated: {exc}") from exc
    except Exception as exc:  # Pillow plugins raise all sorts; none may escape untyped
        raise InvalidImageError(f"{label} could not be decoded: {type(exc).__name__}: {exc}") from exc
    return image, fmt, mode


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        hi = float(array.max()) or 1.0
        image = Image.fromarray((array / hi * 255.0).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(value: str | bytes | Path, policy: ImagePolicy | None = None) -> LoadedImage:
    """Read, check and decode one image source into RGB. Raises only :class:`RiadError` subclasses."""
    policy = policy or ImagePolicy()
    data, label = read_source(value, policy)
    image, fmt, mode = decode_image(data, label, policy)
    return LoadedImage(
        image=image, source=label, sha256=hashlib.sha256(data).hexdigest(), original_mode=mode, format=fmt
    )


#: Working copies of images (what the graph's nodes analyse) have at most this many pixels on their
#: longest side; regions are mapped back to the original size in the report.
WORKING_MAX_SIDE = 1024


def working_size(size: tuple[int, int], max_side: int = WORKING_MAX_SIDE) -> tuple[int, int]:
    """(width, height) of the working copy of an image of ``size``."""
    width, height = size
    scale = max_side / max(width, height)
    if scale >= 1.0:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def working_copy(image: Image.Image, max_side: int = WORKING_MAX_SIDE) -> Image.Image:
    """The image shrunk (bilinear) to :func:`working_size`; the image itself when already small enough."""
    size = working_size(image.size, max_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR)


def encode_png(image: Image.Image, compress_level: int = 6) -> bytes:
    """PNG bytes of an image (``compress_level`` 1 is fast, 9 is small)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def pool_to_grid(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Average-pool a 2-D map onto a (rows x cols) grid (cells split as evenly as possible).

    Exact block means through a summed-area table; when the grid is finer than the map, a cell
    takes the one pixel it falls on.
    """
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {values.shape}")
    height, width = values.shape
    row_edges = np.linspace(0, height, rows + 1).round().astype(int)
    col_edges = np.linspace(0, width, cols + 1).round().astype(int)
    r0, c0 = np.minimum(row_edges[:-1], height - 1), np.minimum(col_edges[:-1], width - 1)
    r1, c1 = np.maximum(row_edges[1:], r0 + 1), np.maximum(col_edges[1:], c0 + 1)
    summed = np.pad(values.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    r0, r1, c0, c1 = r0[:, None], r1[:, None], c0[None, :], c1[None, :]
    total = summed[r1, c1] - summed[r0, c1] - summed[r1, c0] + summed[r0, c0]
    return (total / ((r1 - r0) * (c1 - c0))).astype(np.float32)
