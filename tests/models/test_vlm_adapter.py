"""The Qwen2-VL / Qwen2.5-VL adapter: prompt layout, positions, cached suffix forwards, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image
from support.tiny_models import build_tiny_qwen2_vl, noise_image

from riad_agent.errors import ImageTooLargeError, InvalidImageError
from riad_agent.models.base import ImageSegment, TextSegment, VisionLanguageModel
from riad_agent.models.qwen_vl import QwenVLAdapter

torch.set_num_threads(1)
VARIANTS = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module", params=VARIANTS)
def vlm(request: pytest.FixtureRequest) -> QwenVLAdapter:
    return build_tiny_qwen2_vl(request.param, seed=1)


def _segments(query: Image.Image, template: Image.Image) -> list:
    return [
        TextSegment("Knowledge: a crack is a thin dark line.\nTemplate: "),
        ImageSegment(template, role="template"),
        TextSegment("\nQuery: "),
        ImageSegment(query, role="query"),
        TextSegment("\nIs there a defect? A. Yes. B. No."),
    ]


def test_adapter_satisfies_protocol(vlm: QwenVLAdapter) -> None:
    assert isinstance(vlm, VisionLanguageModel)


def test_prompt_spans_grid_and_features(vlm: QwenVLAdapter) -> None:
    prompt = vlm.prepare(_segments(noise_image(64, 48, seed=1), noise_image(32, 32, seed=2)))
    template, query = prompt.spans
    assert (template.role, query.role) == ("template", "query")
    assert prompt.query_span is query
    # 64x48 px with 4 px patches merged 2x2 -> 8 px cells: 6 rows x 8 cols
    assert (query.rows, query.cols, query.length) == (6, 8, 48)
    assert (template.rows, template.cols) == (4, 4)
    ids = prompt.input_ids[0]
    assert bool((ids[query.start : query.end] == vlm.image_token_id).all())
    assert int(ids[query.start - 1]) == vlm.vision_start_id and int(ids[query.end]) == vlm.vision_end_id
    assert int((ids == vlm.image_token_id).sum()) == template.length + query.length
    # the real merged visual features sit at the image-token positions
    assert torch.equal(prompt.inputs_embeds[0, query.start : query.end], query.features)
    assert query.features.shape == (48, vlm.hidden_size)
    # boxes tile the original image row-major
    assert query.boxes[0] == (0, 0, 8, 8) and query.boxes[-1] == (56, 40, 64, 48)
    assert query.boxes[8] == (0, 8, 8, 16)


def test_positions_are_the_models_mrope(vlm: QwenVLAdapter) -> None:
    prompt = vlm.prepare(_segments(noise_image(64, 48), noise_image(32, 32)))
    query = prompt.query_span
    pos = prompt.position_ids
    assert pos.shape == (3, 1, prompt.length)
    # image tokens: temporal constant, height runs over rows, width over columns
    block = pos[:, 0, query.start : query.end]
    assert int(block[0].unique().numel()) == 1
    assert block[1].view(6, 8)[:, 0].tolist() == list(range(int(block[1, 0]), int(block[1, 0]) + 6))
    assert block[2].view(6, 8)[0].tolist() == list(range(int(block[2, 0]), int(block[2, 0]) + 8))
    # text continues after the largest position; the suffix starts right after the prompt's maximum
    assert prompt.next_position == int(pos.max()) + 1
    assert prompt.next_position < prompt.length
    mm = (prompt.input_ids == vlm.image_token_id).int()
    reference, _ = vlm.model.model.get_rope_index(
        prompt.input_ids, mm_token_type_ids=mm, image_grid_thw=prompt.extras["image_grid_thw"]
    )
    assert torch.equal(reference, pos)


def test_prefix_matches_the_hf_model_forward(vlm: QwenVLAdapter) -> None:
    prompt = vlm.prepare(_segments(noise_image(40, 40), noise_image(40, 40, seed=3)))
    prefix = vlm.prefix_forward(prompt)
    with torch.no_grad():
        out = vlm.model(
            input_ids=prompt.input_ids,
            pixel_values=prompt.extras["pixel_values"],
            image_grid_thw=prompt.extras["image_grid_thw"],
            mm_token_type_ids=(prompt.input_ids == vlm.image_token_id).int(),
        )
    assert torch.allclose(out.logits[0, -1].float(), prefix.last_logits, atol=1e-4)


def test_packed_suffix_equals_uncached_forward_and_leaves_prefix_intact(vlm: QwenVLAdapter) -> None:
    prompt = vlm.prepare(_segments(noise_image(48, 48), noise_image(48, 48, seed=4)))
    prefix = vlm.prefix_forward(prompt)
    cache: Any = prefix.cache
    before = [(layer.keys, layer.keys.clone()) for layer in cache.layers]
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randn(n, vlm.hidden_size, generator=gen) * 0.05 for n in (5, 9, 5, 7)]
    positions = [list(range(n)) for n in (5, 9, 5, 7)]
    out = vlm.suffix_forward(prefix, rows, positions)
    for row, pos, logits in zip(rows, positions, out.logits, strict=True):
        reference = vlm.full_forward(prompt, row, pos)
        assert logits.shape == (len(pos), reference.shape[-1])
        assert torch.allclose(logits, reference, atol=1e-4), float((logits - reference).abs().max())
    # rows do not see each other: changing row 1 leaves row 0 unchanged
    rows2 = [rows[0], rows[1] + 1.0, rows[2], rows[3]]
    again = vlm.suffix_forward(prefix, rows2, positions)
    assert torch.allclose(again.logits[0], out.logits[0], atol=1e-5)
    assert not torch.allclose(again.logits[1], out.logits[1], atol=1e-3)
    vlm.generate(prefix, vlm.answer_start(), 3)
    for (tensor, copy), layer in zip(before, cache.layers, strict=True):
        assert layer.keys is tensor and torch.equal(tensor, copy)
        assert layer.keys.shape[-2] == prompt.length


def test_attention_to_query_matches_eager_attention(vlm: QwenVLAdapter) -> None:
    prompt = vlm.prepare(_segments(noise_image(32, 32), noise_image(32, 32, seed=5)))
    prefix = vlm.prefix_forward(prompt)
    row = torch.randn(6, vlm.hidden_size, generator=torch.Generator().manual_seed(1)) * 0.05
    other = torch.randn(4, vlm.hidden_size, generator=torch.Generator().manual_seed(2)) * 0.05
    out = vlm.suffix_forward(
        prefix, [other, row], [[0], [0]], attend_from=[[], [0, 1, 2]], attention_layers=[1, 3]
    )
    assert out.attention is not None
    mine = out.attention[1]
    span = prompt.query_span
    assert mine.shape == (span.length,)
    assert float(out.attention[0].abs().sum()) == 0.0
    # reference: eager attention weights of the full uncached sequence
    lm = vlm.model.model.language_model
    old = vlm.model.config._attn_implementation
    vlm.model.set_attn_implementation("eager")
    try:
        sequence = torch.cat([prompt.inputs_embeds, row[None]], dim=1)
        tail = torch.arange(6) + prompt.next_position
        position_ids = torch.cat([prompt.position_ids, tail.view(1, 1, -1).expand(3, 1, -1)], dim=-1)
        with torch.no_grad():
            extra = vlm._visual_kwargs(prompt, int(sequence.shape[1]), [], with_prompt=True)
            ref = lm(inputs_embeds=sequence, position_ids=position_ids, output_attentions=True, **extra)
    finally:
        vlm.model.set_attn_implementation(old)
    rows = slice(prompt.length, prompt.length + 3)
    expected = torch.stack(
        [ref.attentions[i][0, :, rows, span.start : span.end].mean((0, 1)) for i in (1, 3)]
    ).mean(0)
    assert torch.allclose(mine, expected, atol=1e-5)


def test_oversized_and_invalid_images_raise_typed_errors() -> None:
    vlm = build_tiny_qwen2_vl("qwen2_vl", max_image_pixels=100 * 100)
    with pytest.raises(ImageTooLargeError, match="pixel"):
        vlm.prepare([ImageSegment(noise_image(101, 100), role="query"), TextSegment("?")])
    with pytest.raises(InvalidImageError):
        vlm.prepare([ImageSegment("not an image", role="query")])  # type: ignore[arg-type]
    with pytest.raises(InvalidImageError, match="exactly one query"):
        vlm.prepare([TextSegment("no image")])
    prompt = vlm.prepare([ImageSegment(noise_image(100, 100).convert("L"), role="query"), TextSegment("?")])
    assert prompt.query_span.length > 0


def test_option_tokens_and_generation(vlm: QwenVLAdapter) -> None:
    ids = vlm.option_token_ids(["A", "B", "C"])
    assert all(len(v) >= 1 for v in ids.values())
    assert vlm.decode_tokens([ids["A"][0]]).strip() == "A"
    prompt = vlm.prepare(_segments(noise_image(32, 32), noise_image(32, 32)))
    prefix = vlm.prefix_forward(prompt)
    first, produced = vlm.generate(prefix, vlm.answer_start(), 4)
    row = vlm.answer_start()
    reference = vlm.full_forward(prompt, row, [row.shape[0] - 1])[0]
    assert torch.allclose(first, reference, atol=1e-4)
    assert len(produced) <= 4 and (not produced or produced[0] == int(reference.argmax()))


def test_qwen3_deepstack_follows_spliced_patches() -> None:
    vlm = build_tiny_qwen2_vl("qwen3_vl", seed=2)
    prompt = vlm.prepare(_segments(noise_image(48, 48), noise_image(48, 48, seed=6)))
    span = prompt.query_span
    assert len(span.extra_features) == 1 and span.extra_features[0].shape == span.features.shape
    prefix = vlm.prefix_forward(prompt)
    latents = torch.randn(4, vlm.hidden_size, generator=torch.Generator().manual_seed(3)) * 0.05
    row = torch.cat([latents, span.features[[2, 7]], vlm.answer_start()])
    positions = [0, 3, 6, int(row.shape[0]) - 1]
    cached = vlm.suffix_forward(prefix, [row, row], [positions, positions], injected=[(4, [2, 7]), (4, [])])
    with_deepstack = vlm.full_forward(prompt, row, positions, injected=(4, [2, 7]))
    without = vlm.full_forward(prompt, row, positions)
    assert torch.allclose(cached.logits[0], with_deepstack, atol=1e-4)
    assert torch.allclose(cached.logits[1], without, atol=1e-4)
    # latent positions precede the patches: unaffected; later positions see the deepstack features
    assert torch.allclose(with_deepstack[:2], without[:2], atol=1e-5)
    assert float((with_deepstack[2:] - without[2:]).abs().max()) > 1e-3


def test_qwen3_deepstack_follows_interleaved_patch_blocks() -> None:
    """A row with several patch blocks (patches interleaved with latents): cached == uncached, grouped too."""
    vlm = build_tiny_qwen2_vl("qwen3_vl", seed=2)
    prompt = vlm.prepare(_segments(noise_image(48, 48), noise_image(48, 48, seed=6)))
    span = prompt.query_span
    prefix = vlm.prefix_forward(prompt)
    z = torch.randn(2, vlm.hidden_size, generator=torch.Generator().manual_seed(3)) * 0.05
    row = torch.cat([z[:1], span.features[[2, 7]], z[1:], span.features[[5]], vlm.answer_start()])
    blocks = [(1, [2, 7]), (4, [5])]
    positions = [0, 3, int(row.shape[0]) - 1]
    cached = vlm.suffix_forward(prefix, [row], [positions], injected=[blocks])
    uncached = vlm.full_forward(prompt, row, positions, injected=blocks)
    one_block = vlm.full_forward(prompt, row, positions, injected=(1, [2, 7]))
    assert torch.allclose(cached.logits[0], uncached, atol=1e-4)
    assert float((uncached[2] - one_block[2]).abs().max()) > 1e-4  # the second block's deepstack counts
    first, _ = vlm.generate(prefix, row, 1, injected=blocks)
    assert torch.allclose(first, uncached[-1], atol=1e-4)


def test_scratch_room_and_grouped_attention_match_the_plain_fork(vlm: QwenVLAdapter) -> None:
    """The copy-free suffix forward (scratch room, grouped heads) equals transformers' own path."""
    from riad_agent.models.hf_attention import packed_suffix_mask
    from riad_agent.models.hf_cache import fork_cache

    prompt = vlm.prepare(_segments(noise_image(40, 40), noise_image(40, 40, seed=6)))
    prefix = vlm.prefix_forward(prompt)
    config = vlm._language_model().config
    assert config._attn_implementation == "sdpa"
    assert config.num_key_value_heads < config.num_attention_heads  # the grouped-head path is exercised
    gen = torch.Generator().manual_seed(3)
    lengths = [6, 4, 6]
    rows = [torch.randn(n, vlm.hidden_size, generator=gen) * 0.05 for n in lengths]
    positions = [list(range(n)) for n in lengths]
    with torch.no_grad():  # the loop's forwards (under autograd the plain fork is used)
        out = vlm.suffix_forward(prefix, rows, positions)
    rooms: Any = prefix.scratch
    assert rooms is not None and rooms[0][0].shape[-2] >= prompt.length + sum(lengths)
    # reference: concatenating fork + transformers' sdpa (repeat_kv), as before the optimisation
    packed = torch.cat(rows)[None]
    offsets = torch.cat([torch.arange(n) for n in lengths]) + prompt.next_position
    mask = packed_suffix_mask(prompt.length, lengths, vlm.dtype, vlm.device)
    starts = [0, lengths[0], lengths[0] + lengths[1]]
    with torch.no_grad():
        hidden, _ = vlm._run(packed, vlm._text_positions(offsets), fork_cache(prefix.cache), mask)
    for start, pos, logits in zip(starts, positions, out.logits, strict=True):
        reference = vlm._lm_head()(hidden[0, [start + p for p in pos]]).float()
        assert torch.allclose(logits, reference, atol=1e-6), float((logits - reference).abs().max())
    # a shorter suffix reuses the room; a much longer one grows it, results unchanged
    storage = rooms[0][0].data_ptr()
    with torch.no_grad():
        again = vlm.suffix_forward(prefix, rows[:1], positions[:1])
    assert rooms[0][0].data_ptr() == storage
    assert prefix.scratch is rooms
    assert torch.allclose(again.logits[0], out.logits[0], atol=1e-5)
    long_row = torch.randn(3 * sum(lengths), vlm.hidden_size, generator=gen) * 0.05
    with torch.no_grad():
        vlm.suffix_forward(prefix, [long_row], [[0]])
        assert prefix.scratch is not rooms
        last = vlm.suffix_forward(prefix, rows, positions)
    for logits, expected in zip(last.logits, out.logits, strict=True):
        assert torch.allclose(logits, expected, atol=1e-6)
    cache: Any = prefix.cache
    assert all(layer.keys.shape[-2] == prompt.length for layer in cache.layers)
    assert config._attn_implementation == "sdpa"  # restored after every suffix forward
