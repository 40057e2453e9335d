"""Images of an inspection by reference: remembered once, reopened as working copies by the nodes.

A path given by the caller is referenced as it is; bytes, base64 and data URIs go into the blob
store. Either way the reference carries the SHA-256 of the bytes, and reopening checks it, so a
file replaced mid-inspection is an error rather than a silent mix of two images.

Decoded working copies are kept in a small in-process cache by SHA-256, so the nodes that reopen an
image, and inspections that share references (triage), decode each image once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from riad_agent.blobs import BlobStore, sha256_hex
from riad_agent.errors import InvalidImageError
from riad_agent.graphs.state import ImageRef
from riad_agent.imaging import ImagePolicy, decode_image, read_source, working_copy

_INLINE_LABELS = {"<bytes>", "<data URI>", "<base64>"}  # read_source's labels of sources that are no path

#: Working copies kept decoded (at most 1024 px a side: about 3 MB each).
CACHED_WORKING_COPIES = 24


class _WorkingCopies:
    """A bounded LRU of decoded working copies by SHA-256 of the encoded bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._images: OrderedDict[str, tuple[Image.Image, tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def decoded(
        self, data: bytes, sha256: str, label: str, policy: ImagePolicy
    ) -> tuple[Image.Image, tuple[int, int]]:
        """(working copy, original size) of ``data``, decoding it only when not cached."""
        with self._lock:
            cached = self._images.get(sha256)
            if cached is not None:
                self._images.move_to_end(sha256)
                return cached[0].copy(), cached[1]
        image, _, _ = decode_image(data, label, policy)
        working = working_copy(image)
        with self._lock:
            self._images[sha256] = (working, image.size)
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)
        return working.copy(), image.size


_CACHE = _WorkingCopies(CACHED_WORKING_COPIES)


def remember_image(
    source: str | bytes, policy: ImagePolicy, blobs: BlobStore
) -> tuple[ImageRef, Image.Image]:
    """Read, check and decode an image source; its reference and its working copy."""
    data, label = read_source(source, policy)
    sha256 = sha256_hex(data)
    working, size = _CACHE.decoded(data, sha256, label, policy)
    if label not in _INLINE_LABELS:  # a path: the caller's file is the copy (reopened with the same checks)
        ref = ImageRef(path=str(Path(label).expanduser().absolute()), sha256=sha256, size=size)
    else:
        ref = ImageRef(path=None, sha256=blobs.put(data), size=size)
    return ref, working


def open_image(ref: ImageRef, policy: ImagePolicy, blobs: BlobStore) -> Image.Image:
    """The working copy of a remembered image; InvalidImageError when its file has changed since."""
    if ref.path is None:
        data, label = blobs.get(ref.sha256), f"<blob {ref.sha256[:12]}>"
    else:
        data, label = read_source(ref.path, policy)
        if sha256_hex(data) != ref.sha256:
            raise InvalidImageError(f"{ref.path} changed during the inspection; inspect it again")
    return _CACHE.decoded(data, ref.sha256, label, policy)[0]
