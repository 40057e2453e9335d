"""The vision-language model protocol the latent reasoner runs on, and the values it exchanges.

A prompt is a list of segments (text and images). An adapter turns it into a :class:`PreparedPrompt`:
the prompt's input embeddings with the *real* merged visual features at the image-token positions,
the position ids, and for every image its visual-token span and merged patch grid. The reasoner then
runs the prompt once as a *prefix* (keeping the KV cache) and evaluates many short *suffix rows*
(latents interleaved with injected patch features, then answer-start tokens) on that cache.

Positions: every suffix token continues the prompt as text, i.e. token ``j`` of a suffix row sits at
text position ``prompt.next_position + j`` (for M-RoPE models the three axes are equal, as for any
text token). Injected patches therefore get the positions of the slots they are spliced into, not
their original place in the image grid: their content says *what* they are, their position says
*where in the reasoning* they were re-read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from riad_agent.errors import ImageTooLargeError, InvalidImageError

ImageRole = Literal["template", "query"]


@dataclass(frozen=True)
class TextSegment:
    """Plain prompt text."""

    text: str


@dataclass(frozen=True)
class ImageSegment:
    """An image in the prompt; exactly one segment of a prompt has ``role='query'``.

    ``evidence`` is the vision expert's [0, 1] prior map for this image (any 2-D size, 0.5 = edge of
    normal) and ``score`` its calibrated image score (0.5 = edge of normal). Models that read them
    (the builtin model: channels and an evidence line) use them; others ignore them.
    """

    image: Image.Image
    role: ImageRole = "query"
    evidence: np.ndarray | None = field(default=None, compare=False, repr=False)
    score: float | None = field(default=None, compare=False)


Segment = TextSegment | ImageSegment


@dataclass
class VisualSpan:
    """One image's visual tokens in the prompt and its merged patch grid.

    ``features`` are the merged vision-tower outputs (``rows * cols`` x hidden), row-major, i.e. the
    very vectors placed at prompt positions ``start .. end-1``. ``boxes`` are pixel boxes
    ``(x0, y0, x1, y1)`` in the original image for each merged patch, same order.
    """

    start: int
    end: int
    rows: int
    cols: int
    boxes: list[tuple[int, int, int, int]]
    features: torch.Tensor
    role: ImageRole
    extra_features: list[torch.Tensor] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class PreparedPrompt:
    """A tokenised prompt with visual features in place, ready for a prefix forward."""

    input_ids: torch.Tensor
    inputs_embeds: torch.Tensor
    position_ids: torch.Tensor
    next_position: int
    spans: list[VisualSpan]
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.inputs_embeds.shape[1])

    @property
    def query_span(self) -> VisualSpan:
        for span in self.spans:
            if span.role == "query":
                return span
        raise InvalidImageError("the prompt has no query image")


Injection = tuple[int, list[int]]
"""Where a row holds query-image patches: (offset of the first patch in the row, patch indices).

Models that feed visual features beyond the input embeddings (Qwen3-VL's deepstack) use it to
treat spliced patches exactly like the image tokens they were copied from; others ignore it."""

RowInjection = Injection | list[Injection]
"""A row's patches: one contiguous block, or several (patches interleaved with the latents)."""


def injection_blocks(injected: RowInjection | None) -> list[Injection]:
    """The non-empty contiguous blocks of a row's injection, in row order."""
    if injected is None:
        return []
    blocks = [injected] if isinstance(injected, tuple) else list(injected)
    return sorted(((at, list(indices)) for at, indices in blocks if indices), key=lambda block: block[0])


StopCheck = Callable[[], bool]
"""A caller's "stop now?", asked by a decode before each new token; True ends it early with the
tokens so far (the caller, who stopped it, decides what that means)."""


@dataclass
class PrefixState:
    """The KV cache after the prompt prefix; shared and never mutated by suffix forwards.

    ``scratch`` is the adapter's own working room for suffix forwards (e.g. a copy of the cache with
    room after the prefix, made once), not part of the prefix.
    """

    prompt: PreparedPrompt
    cache: object
    last_logits: torch.Tensor
    scratch: object | None = None


@dataclass
class SuffixOutput:
    """Logits at the requested positions of each suffix row, and optional query-image attention.

    ``logits[i]`` has shape (len(positions[i]), vocab). ``attention[i]`` is the attention mass from
    the requested rows onto the query image's visual tokens, averaged over the chosen layers, heads
    and query rows (shape: query image tokens); ``None`` when not requested.
    """

    logits: list[torch.Tensor]
    attention: list[torch.Tensor] | None = None


@runtime_checkable
class VisionLanguageModel(Protocol):
    """What the latent reasoner needs from a VLM; adapters wrap a concrete model family."""

    model_id: str
    hidden_size: int
    num_layers: int
    device: torch.device
    dtype: torch.dtype

    def prepare(self, segments: list[Segment]) -> PreparedPrompt:
        """Tokenise the user turn (system turn included) up to the end of ``segments``."""
        ...

    def embed_text(self, text: str) -> torch.Tensor:
        """Input embeddings (tokens x hidden) of plain text."""
        ...

    def answer_start(self) -> torch.Tensor:
        """Embeddings that close the user turn and open the assistant turn."""
        ...

    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding table (vocab x hidden), for initialisation and scale."""
        ...

    def prefix_forward(self, prompt: PreparedPrompt) -> PrefixState:
        """Run the prompt once and keep its KV cache."""
        ...

    def suffix_forward(
        self,
        prefix: PrefixState,
        rows: list[torch.Tensor],
        positions: list[list[int]],
        attend_from: list[list[int]] | None = None,
        attention_layers: list[int] | None = None,
        injected: Sequence[RowInjection] | None = None,
    ) -> SuffixOutput:
        """Evaluate suffix rows (each tokens x hidden) on the shared prefix cache in one batch."""
        ...

    def full_forward(
        self,
        prompt: PreparedPrompt,
        row: torch.Tensor,
        positions: list[int],
        recompute_vision: bool = False,
        injected: RowInjection | None = None,
    ) -> torch.Tensor:
        """Uncached reference: the whole prompt + one row in one forward (logits at ``positions``)."""
        ...

    def generate(
        self,
        prefix: PrefixState,
        row: torch.Tensor,
        max_new_tokens: int,
        injected: RowInjection | None = None,
        should_stop: StopCheck | None = None,
    ) -> tuple[torch.Tensor, list[int]]:
        """Greedy decode after prefix + row: (logits at the row's last token, generated token ids).

        ``should_stop`` is asked before each new token: True ends the decode with the ids so far."""
        ...

    def option_token_ids(self, letters: list[str]) -> dict[str, list[int]]:
        """Single-token ids that spell each option letter (with and without a leading space)."""
        ...

    def decode_tokens(self, ids: list[int]) -> str:
        """Token ids to text, special tokens dropped."""
        ...


@runtime_checkable
class BatchedVisionLanguageModel(VisionLanguageModel, Protocol):
    """A model that can also run several requests, each on its own prefix, in one forward.

    Every method returns, per request, what its single-request counterpart returns (up to float
    rounding); :class:`~riad_agent.models.hf_batch.BatchedHFDecoderAdapter` implements them.
    """

    def prefix_forward_batch(self, prompts: list[PreparedPrompt]) -> list[PrefixState]:
        """:meth:`prefix_forward` of several prompts."""
        ...

    def suffix_forward_batch(
        self,
        prefixes: list[PrefixState],
        rows: list[list[torch.Tensor]],
        positions: list[list[list[int]]],
        attend_from: list[list[list[int]] | None],
        attention_layers: list[int] | None = None,
        injected: Sequence[Sequence[RowInjection]] | None = None,
    ) -> list[SuffixOutput]:
        """:meth:`suffix_forward` of several requests (request i: ``prefixes[i]``, ``rows[i]``...)."""
        ...

    def generate_batch(
        self,
        prefixes: list[PrefixState],
        rows: list[torch.Tensor],
        max_new_tokens: int,
        injected: Sequence[RowInjection | None] | None = None,
        should_stop: list[StopCheck | None] | None = None,
    ) -> list[tuple[torch.Tensor, list[int]]]:
        """:meth:`generate` of several requests; ``should_stop[i]`` ends only request i's decode."""
        ...


def labelled_segments(segments: list[Segment]) -> list[tuple[Segment, str]]:
    """Each segment with the name errors use for it ('query image', 'template image 2', '' for text).

    Raises ``InvalidImageError`` unless exactly one segment is the query image.
    """
    if sum(isinstance(s, ImageSegment) and s.role == "query" for s in segments) != 1:
        raise InvalidImageError("a prompt needs exactly one query image")
    labelled: list[tuple[Segment, str]] = []
    templates = 0
    for segment in segments:
        if isinstance(segment, TextSegment):
            labelled.append((segment, ""))
            continue
        templates += segment.role == "template"
        labelled.append(
            (segment, "query image" if segment.role == "query" else f"template image {templates}")
        )
    return labelled


def check_image(image: object, max_pixels: int, label: str = "image") -> Image.Image:
    """Validate a PIL image for a VLM: RGB-convertible, non-empty, within the pixel budget."""
    if not isinstance(image, Image.Image):
        raise InvalidImageError(f"{label} must be a PIL image, got {type(image).__name__}")
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImageError(f"{label} is empty ({width}x{height}); give a real image")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label} has {width}x{height} = {width * height} pixels, over the model budget of "
            f"{max_pixels}; downscale it or raise the budget"
        )
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except (OSError, ValueError) as exc:
            raise InvalidImageError(f"{label} cannot be converted to RGB ({exc})") from exc
    return image
