"""Image and region embeddings from the expert's backbone, for recognising products and typing defects.

A *global* embedding describes a whole image: every tapped layer of the backbone (EfficientNet-Lite0
by default, s4 to s32) is pooled over the image into its per-channel mean and standard deviation,
each of those blocks is L2-normalised (so no layer drowns the others), and the concatenation is
L2-normalised again; the cosine of two embeddings is their dot product. Both see the image resized
to a square of ``image_size`` pixels: :data:`EMBED_SIZE`, the expert's default input, so that
recognising a product, the expert's map and typing its defect read one backbone pass of the query
(the backbone keeps its recent single-image maps).

A defect region is typed by its *signature* (:class:`RegionSignature`): the defect's own cells of two
middle layers (``CELL_LAYERS``: s8 and s16 of EfficientNet-Lite0), each cell's feature vector at unit
length, and the region describer's words (shape, contrast, size, elongation). The cells are those of
the box that the defect covers: of a mask, every cell it touches; of an anomaly map, every cell at
half the map's peak in the box or more (the box alone would mostly be the part around the defect).
Two signatures compare by :func:`signature_similarity`: per layer, each cell's best match on the
other side, averaged both ways (so the sets need not be the same size or place), the layers'
mean mixed with the words' cosine by ``WORDS_WEIGHT``. Measured against the box's channel means
(``region_vector``, used before) in docs/results.md ("Typing by the defect's own cells").
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from riad_agent.backbones import FeatureBackbone, images_to_batch, load_backbone
from riad_agent.errors import InvalidRequestError
from riad_agent.expert.describe import describe_regions
from riad_agent.schemas import DescribedRegion, Region

#: The embedder's input side: the expert's default (``FeatureConfig.image_size``), so both share a pass.
EMBED_SIZE = 256

#: Images whose feature maps an embedder keeps (one inspection reads them twice: recognition, then typing).
RECENT_FEATURES = 4

#: Rotations (degrees, counter-clockwise) stored for a product whose parts lie at any angle.
FREE_POSE_ROTATIONS: tuple[int, ...] = (0, 90, 180, 270)


def _blocks(values: Sequence[torch.Tensor]) -> np.ndarray:
    """L2-normalise each (B, C) block, concatenate, L2-normalise the rows."""
    parts = [F.normalize(v.float(), dim=1) for v in values]
    return F.normalize(torch.cat(parts, dim=1), dim=1).numpy().astype(np.float32)


def _global(maps: Sequence[torch.Tensor]) -> np.ndarray:
    """(B, D) global embeddings of a batch's feature maps."""
    pooled: list[torch.Tensor] = []
    for feature_map in maps:
        flat = feature_map.float().flatten(2)
        pooled += [flat.mean(dim=2), flat.std(dim=2)]
    return _blocks(pooled)


#: Tapped layers whose cells type a defect (EfficientNet-Lite0: s8 and s16, 8 and 16 px cells at 256 px).
CELL_LAYERS: tuple[int, ...] = (1, 2)

#: Most cells per layer in a signature (the heaviest kept): a large mask stays a few kilobytes.
MAX_CELLS = 256

#: An anomaly map's cells at this share of its peak in the box or more are the defect's.
MAP_SHARE = 0.5

#: A mask's cells that it covers at this share of its fullest cell or more (any real overlap).
MASK_SHARE = 0.05


def _at_image_size(weights: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A mask or map of the image as float32 at its ``size`` (width, height).

    The expert's prior map is square at the expert's input side (it squeezes every image to a square),
    so a map of another shape is stretched back over the whole image.
    """
    values = np.asarray(weights, dtype=np.float32)
    if values.ndim != 2:
        raise InvalidRequestError(
            f"a region's weights must be a 2-D map of the image (got shape {values.shape})"
        )
    if values.shape != (size[1], size[0]):
        values = np.asarray(
            Image.fromarray(values, mode="F").resize(size, Image.Resampling.BILINEAR), dtype=np.float32
        )
    return values


@dataclass(frozen=True)
class RegionSignature:
    """What types a defect region: its cells' unit feature vectors per layer, and its words' vector."""

    cells: list[np.ndarray]
    words: np.ndarray


def _best_matches(query: np.ndarray, other: np.ndarray) -> float:
    """Each cell's best cosine on the other side, averaged both ways (0 when a side is empty)."""
    if not len(query) or not len(other):
        return 0.0
    similarity = query @ other.T
    return 0.5 * float(similarity.max(axis=1).mean() + similarity.max(axis=0).mean())


def signature_similarity(query: RegionSignature, exemplar: RegionSignature) -> float:
    """How alike two defect regions are: their cells' best matches (mean over layers) and their words'
    cosine, mixed by ``WORDS_WEIGHT``; at most 1."""
    cells = float(np.mean([_best_matches(q, e) for q, e in zip(query.cells, exemplar.cells, strict=True)]))
    return (1.0 - WORDS_WEIGHT) * cells + WORDS_WEIGHT * float(query.words @ exemplar.words)


@dataclass(frozen=True)
class ImageFeatures:
    """The backbone's feature maps of one image (``size``: its width and height in pixels)."""

    maps: list[torch.Tensor]
    size: tuple[int, int]

    def global_vector(self) -> np.ndarray:
        """(D,) global embedding: per-layer channel means and standard deviations, unit length."""
        return _global(self.maps)[0]

    def _cells(self, feature_map: torch.Tensor, box: tuple[int, int, int, int]) -> tuple[slice, slice]:
        """The rows and columns of ``feature_map``'s grid that the pixel box covers (at least one cell)."""
        width, height = self.size
        x0, y0, x1, y1 = box
        rows, cols = feature_map.shape[-2:]
        c0 = min(x0 * cols // width, cols - 1)
        r0 = min(y0 * rows // height, rows - 1)
        c1 = min(max(c0 + 1, -(-x1 * cols // width)), cols)
        r1 = min(max(r0 + 1, -(-y1 * rows // height)), rows)
        return slice(r0, r1), slice(c0, c1)

    def region_vector(self, box: tuple[int, int, int, int]) -> np.ndarray:
        """(D',) embedding of the pixel box ``(x0, y0, x1, y1)``: per-layer channel means inside it."""
        pooled: list[torch.Tensor] = []
        for feature_map in self.maps:
            rows, cols = self._cells(feature_map, box)
            inside = feature_map[0, :, rows, cols].float().flatten(1)
            pooled.append(inside.mean(dim=1, keepdim=True).T)
        return _blocks(pooled)[0]

    def region_cells(
        self, box: tuple[int, int, int, int], weights: np.ndarray | None = None, share: float = MAP_SHARE
    ) -> list[np.ndarray]:
        """Per layer of ``CELL_LAYERS``, the (n, C) unit feature vectors of the defect's cells in ``box``.

        ``weights`` (the image's height x width: a mask or an anomaly map) pooled onto each grid pick
        the cells at ``share`` of the box's highest or more; without weights, every cell of the box.
        At most ``MAX_CELLS`` per layer, the heaviest first.
        """
        inside = None
        if (
            weights is not None
        ):  # only the box's pixels weigh: a cell on its edge is judged by its share inside
            values = _at_image_size(weights, self.size)
            x0, y0, x1, y1 = box
            inside = np.zeros_like(values)
            inside[y0:y1, x0:x1] = values[y0:y1, x0:x1]
        found: list[np.ndarray] = []
        for index in CELL_LAYERS:
            feature_map = self.maps[min(index, len(self.maps) - 1)]
            rows, cols = self._cells(feature_map, box)
            vectors = F.normalize(feature_map[0, :, rows, cols].float().flatten(1).T, dim=1)
            if inside is not None:
                grid = torch.from_numpy(inside)[None, None]
                size = (int(feature_map.shape[-2]), int(feature_map.shape[-1]))
                pooled = F.adaptive_avg_pool2d(grid, size)[0, 0, rows, cols].flatten()
                peak = float(pooled.max())
                if peak > 0:
                    order = torch.argsort(pooled, descending=True)
                    keep = order[pooled[order] >= share * peak][:MAX_CELLS]
                    vectors = vectors[keep]
            found.append(vectors[:MAX_CELLS].numpy().astype(np.float32))
        return found

    def region_signature(
        self,
        box: tuple[int, int, int, int],
        words: DescribedRegion | None = None,
        weights: np.ndarray | None = None,
        share: float = MAP_SHARE,
    ) -> RegionSignature:
        """The defect region's cells (see :meth:`region_cells`) and its words."""
        return RegionSignature(cells=self.region_cells(box, weights, share), words=words_vector(words))


class ImageEmbedder:
    """Global and region embeddings of RGB images through one frozen backbone."""

    def __init__(
        self, backbone: FeatureBackbone | str = "efficientnet-lite0", image_size: int = EMBED_SIZE
    ) -> None:
        self.backbone = load_backbone(backbone) if isinstance(backbone, str) else backbone
        self.image_size = image_size
        self._recent: OrderedDict[tuple[tuple[int, int], bytes], ImageFeatures] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def embedder_id(self) -> str:
        """Names the backbone and input size: embeddings of different ids are not comparable."""
        return f"{self.backbone.backbone_id}@{self.image_size}+cells+words"

    def _maps(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        return self.backbone(images_to_batch(images, self.image_size))

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) global embeddings, unit length."""
        if not images:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _global(self._maps(images))

    def embed_rotations(
        self, image: Image.Image, rotations: Sequence[int] = FREE_POSE_ROTATIONS
    ) -> np.ndarray:
        """(len(rotations), D) global embeddings of ``image`` turned by each angle."""
        return self.embed([image.rotate(angle, expand=True) for angle in rotations])

    def features(self, image: Image.Image) -> ImageFeatures:
        """One forward pass of ``image``, from which its global and region embeddings are both read.

        The maps of the last :data:`RECENT_FEATURES` images (by content) are kept, so recognising a
        product and typing its defect on the same image cost one pass.
        """
        rgb = image.convert("RGB")
        key = (rgb.size, hashlib.blake2b(rgb.tobytes(), digest_size=16).digest())
        with self._lock:
            kept = self._recent.get(key)
            if kept is not None:
                self._recent.move_to_end(key)
                return kept
        found = ImageFeatures(self._maps([rgb]), image.size)
        with self._lock:
            self._recent[key] = found
            while len(self._recent) > RECENT_FEATURES:
                self._recent.popitem(last=False)
        return found

    @property
    def dimension(self) -> int:
        """Width of a global embedding."""
        return 2 * self.region_dimension

    @property
    def region_dimension(self) -> int:
        """Width of a region embedding (the sum of the tapped layers' channels)."""
        cached = getattr(self, "_region_dimension", None)
        if cached is None:
            probe = Image.new("RGB", (64, 64))
            cached = sum(int(m.shape[1]) for m in self._maps([probe]))
            self._region_dimension = cached
        return cached

    @property
    def cell_dimensions(self) -> list[int]:
        """Width of a cell's feature vector in each layer of ``CELL_LAYERS``."""
        cached = getattr(self, "_cell_dimensions", None)
        if cached is None:
            maps = self._maps([Image.new("RGB", (64, 64))])
            cached = [int(maps[min(index, len(maps) - 1)].shape[1]) for index in CELL_LAYERS]
            self._cell_dimensions = cached
        return cached


#: Weight of the region's words (the describer's shape, contrast, size) against its look (its cells) in a
#: defect exemplar's similarity: chosen on generated layouts (benchmarks/typing_descriptors.py).
WORDS_WEIGHT = 0.5
_SHAPES = ("elongated", "compact", "spread")
_CONTRASTS = ("darker", "brighter", "colour shift", "little contrast")
WORDS_DIMENSION = len(_SHAPES) + len(_CONTRASTS) + 5


def words_vector(region: DescribedRegion | None) -> np.ndarray:
    """(WORDS_DIMENSION,) unit vector of a described region (zeros when there is no description)."""
    if region is None:
        return np.zeros(WORDS_DIMENSION, dtype=np.float32)
    values = [float(region.shape == shape) for shape in _SHAPES]
    values += [float(region.contrast == contrast) for contrast in _CONTRASTS]
    values += [
        math.tanh(region.lightness_delta / 20.0),
        math.tanh(region.colour_delta / 20.0),
        math.log1p(region.area_pct_of_part) / 3.0,
        math.log(max(region.axis_ratio, 1.0)) / 2.0,
        region.fill,
    ]
    vector = np.asarray(values, dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def fused_region_vector(look: np.ndarray, words: DescribedRegion | None) -> np.ndarray:
    """A region's box-mean look (:meth:`ImageFeatures.region_vector`) and words in one vector whose dot
    products mix their cosines by WORDS_WEIGHT: the typing before signatures, which benchmarks compare with."""
    return np.concatenate(
        [math.sqrt(1.0 - WORDS_WEIGHT) * look, math.sqrt(WORDS_WEIGHT) * words_vector(words)]
    ).astype(np.float32)


def describe_box(
    image: Image.Image, values: np.ndarray, box: tuple[int, int, int, int], refine: bool
) -> DescribedRegion | None:
    """The describer's words for one box of ``image`` read off ``values`` (a mask or an anomaly map)."""
    x0, y0, x1, y1 = box
    region = Region(x0=x0, y0=y0, x1=x1, y1=y1, score=1.0, area=max(1, (x1 - x0) * (y1 - y0)))
    described = describe_regions(image, np.asarray(values, dtype=np.float32), [region], refine=refine)
    return described.regions[0] if described.regions else None
