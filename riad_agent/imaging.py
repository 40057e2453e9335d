"""Loading and validating images from every source an agent may send, with limits and typed errors.

An image arrives as a path, raw bytes, base64 or a data URI. ``load_image`` decodes it within the
byte and pixel budget of an :class:`ImagePolicy`, refuses paths outside the allowed roots and URLs
unless enabled, and returns an RGB :class:`LoadedImage`. Nothing here ever lets a Pillow exception out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from riad_agent.errors import (
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidImageError,
    PathNotAllowedError,
)

_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I
)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
_BASE64_CHARS = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


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
    """Return the encoded bytes behind an image source and a short label for messages."""
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
        if not match.group("b64"):
            raise InvalidImageError("data URIs must be base64-encoded ('data:image/png;base64,...')")
        return _check_bytes(_b64decode(text[match.end():], "data URI"), "<data URI>", policy), "<data URI>"
    if _URL.match(text):
        if not policy.allow_urls:
            raise PathNotAllowedError(
                f"URLs are refused ({_describe(text)}): send the image as a path, bytes or base64, "
                "or enable allow_urls on the server"
            )
        raise PathNotAllowedError("fetching URLs is not supported by this build; download the image first")
    if len(text) > 512 and _BASE64_CHARS.match(text):
        return _check_bytes(_b64decode(text, "base64 string"), "<base64>", policy), "<base64>"
    return _read_path(Path(text), policy), text


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


def _read_path(path: Path, policy: ImagePolicy) -> bytes:
    label = str(path)
    if "\x00" in label:
        raise InvalidImageError(f"image path {label!r} contains a NUL byte")
    try:
        resolved = path.expanduser().resolve(strict=False)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ImageNotFoundError(f"cannot resolve image path {label}: {exc}") from exc
    if policy.allowed_roots is not None and not any(
        resolved.is_relative_to(root.expanduser().resolve()) for root in policy.allowed_roots
    ):
        roots = ", ".join(str(r) for r in policy.allowed_roots) or "(none)"
        raise PathNotAllowedError(f"image path {label} is outside the allowed roots: {roots}")
    if not resolved.exists():
        raise ImageNotFoundError(f"no such image file: {label}")
    if resolved.is_dir():
        raise ImageNotFoundError(f"{label} is a directory, not an image file")
    if not resolved.is_file():
        raise ImageNotFoundError(f"{label} is not a regular file")
    try:
        size = resolved.stat().st_size
        if size > policy.max_bytes:
            raise ImageTooLargeError(
                f"{label} is {size} bytes, over the limit of {policy.max_bytes} bytes (max_image_bytes)"
            )
        data = resolved.read_bytes()
    except PermissionError as exc:
        raise ImageNotFoundError(f"cannot read {label}: permission denied") from exc
    except OSError as exc:
        raise ImageNotFoundError(f"cannot read {label}: {exc.strerror or exc}") from exc
    return _check_bytes(data, label, policy)


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
                image = _to_rgb(probe)
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
