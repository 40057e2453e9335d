"""What the state refers to instead of holding: the blob store, image references, the expert's evidence."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.fakes import FakeExpert, FakeKnowledge, FakeReasoner, part_image

from riad_agent.blobs import BlobStore
from riad_agent.components import build_components
from riad_agent.errors import BlobNotFoundError, InvalidImageError
from riad_agent.evidence import ExpertFindings, StoredPrior, reasoning_input, request_reasoning_input
from riad_agent.explain import DEFAULT_QUESTION
from riad_agent.graphs.images import open_image, remember_image
from riad_agent.imaging import ImagePolicy
from riad_agent.inspector import Inspector
from riad_agent.protocols import AnomalyMap, Pose
from riad_agent.schemas import InspectionRequest
from riad_agent.settings import Settings


def test_blob_store_is_content_addressed_and_write_once(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    key = blobs.put(b"some bytes")
    assert key == blobs.put(b"some bytes") and blobs.get(key) == b"some bytes"
    assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # one folder, one file
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    restored = blobs.get_array(blobs.put_array(array))
    assert restored.dtype == np.float32 and np.array_equal(restored, array)
    with pytest.raises(BlobNotFoundError):
        blobs.get("0" * 64)
    with pytest.raises(BlobNotFoundError):
        blobs.get("../../etc/passwd")
    assert blobs.prune(older_than_s=3600) == 0 and blobs.prune(older_than_s=-1) == 2


def test_blob_store_stays_under_its_size_limit_dropping_the_least_recently_used(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs", max_bytes=10_000)
    first = blobs.put(b"a" * 3000)
    keys = [blobs.put(bytes([i]) * 3000) for i in range(1, 3)]
    old = tmp_path / "blobs" / first[:2] / first[2:]
    os.utime(old, (1, 1))  # written long ago
    for when, key in enumerate(keys, start=2):
        os.utime(tmp_path / "blobs" / key[:2] / key[2:], (when, when))
    newest = blobs.put(b"z" * 3000)  # 12,000 bytes > 10,000: prune to <= 8,000
    assert blobs.size_bytes() <= 8_000 and blobs.get(newest) == b"z" * 3000
    with pytest.raises(BlobNotFoundError, match="pruned"):
        blobs.get(first)
    assert blobs.get(keys[-1]) == bytes([2]) * 3000  # recently used ones stay


def test_images_are_referenced_by_path_or_blob(tmp_path: Path) -> None:
    blobs, policy = BlobStore(tmp_path / "blobs"), ImagePolicy()
    path = tmp_path / "big.png"
    part_image(True, size=(2048, 1024), seed=1).save(path)
    ref, working = remember_image(str(path), policy, blobs)
    assert ref.path == str(path.resolve()) and ref.size == (2048, 1024) and working.size == (1024, 512)
    assert not (tmp_path / "blobs").exists()  # the caller's file is the copy
    assert np.array_equal(np.asarray(open_image(ref, policy, blobs)), np.asarray(working))

    inline, _ = remember_image(base64.b64encode(path.read_bytes()).decode(), policy, blobs)
    assert (
        inline.path is None and inline.sha256 == ref.sha256 and blobs.get(inline.sha256) == path.read_bytes()
    )
    assert np.array_equal(np.asarray(open_image(inline, policy, blobs)), np.asarray(working))

    part_image(False, size=(2048, 1024), seed=2).save(path)  # replaced mid-inspection
    with pytest.raises(InvalidImageError, match="changed during the inspection"):
        open_image(ref, policy, blobs)


async def test_inline_images_inspect_like_paths(tmp_path: Path, images: dict[str, Path]) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    components = build_components(
        settings, knowledge=FakeKnowledge(), expert=FakeExpert(), reasoner=FakeReasoner()
    )
    inspector = Inspector(components=components)
    by_path = await inspector.ainspect({"image": str(images["bad"]), "references": [str(images["ref0"])]})
    inline = await inspector.ainspect(
        {
            "image": images["bad"].read_bytes(),
            "references": [base64.b64encode(images["ref0"].read_bytes()).decode()],
        }
    )
    assert inline.model_dump(exclude={"timings_ms"}) == by_path.model_dump(exclude={"timings_ms"})


class DeferredHeatmapExpert(FakeExpert):
    """Encodes its heatmap only when asked (``AnomalyMap.render_heatmap``), counting the encodings."""

    def __init__(self) -> None:
        self.encoded = 0

    def analyse(
        self,
        image: Image.Image,
        references: Sequence[Image.Image],
        *,
        pose: Pose | None = None,
        pose_source: str = "knowledge",
    ) -> AnomalyMap:
        anomaly = super().analyse(image, references, pose=pose, pose_source=pose_source)
        anomaly.heatmap_png = None

        def render() -> bytes:
            self.encoded += 1
            return b"\x89PNGlazy"

        anomaly.render_heatmap = render
        return anomaly


async def test_the_heatmap_is_encoded_only_when_asked(tmp_path: Path, images: dict[str, Path]) -> None:
    expert = DeferredHeatmapExpert()
    components = build_components(
        Settings(data_dir=tmp_path / "data"),
        knowledge=FakeKnowledge(),
        expert=expert,
        reasoner=FakeReasoner(),
    )
    inspector = Inspector(components=components)
    request = {"image": str(images["bad"]), "references": [str(images["ref0"])]}
    report = await inspector.ainspect(request)
    assert report.heatmap_png is None and expert.encoded == 0
    report = await inspector.ainspect({**request, "options": {"return_heatmap": True}})
    assert report.heatmap_png == b"\x89PNGlazy" and expert.encoded == 1


def test_one_builder_for_the_reasoners_input(images: dict[str, Path]) -> None:
    image, reference = Image.open(images["bad"]).convert("RGB"), Image.open(images["ref0"]).convert("RGB")
    anomaly = FakeExpert().analyse(image, [reference])
    hits = FakeKnowledge().search("scratch", "synthetic/washer", 2)
    built = reasoning_input(
        image, None, templates=[reference], knowledge=hits, expert=anomaly, category="x", seed=3
    )
    assert built.question == DEFAULT_QUESTION and built.templates == [reference] and built.knowledge == hits
    assert built.image_score == anomaly.score and np.array_equal(built.patch_prior, anomaly.prior_map())
    assert (built.latent_steps, built.latent_tokens, built.inject_patches, built.seed) == (10, 4, True, 3)

    request = InspectionRequest(
        image=str(images["bad"]),
        options={"latent_steps": 2, "latent_tokens": 6, "inject_patches": False, "seed": 9},
    )
    stored = StoredPrior(anomaly.score, anomaly.prior_map())
    from_request = request_reasoning_input(
        request, image, [reference, image], hits, stored, "synthetic/washer"
    )
    assert from_request.templates == [reference]  # the first reference only
    assert (
        np.array_equal(from_request.patch_prior, built.patch_prior)
        and from_request.image_score == anomaly.score
    )
    assert (from_request.latent_steps, from_request.latent_tokens, from_request.inject_patches) == (
        2,
        6,
        False,
    )
    assert from_request.seed == 9 and from_request.category == "synthetic/washer"
    assert reasoning_input(image).patch_prior is None
    # the expert's score settles an answer unless it gave cautions or notes (or there is no expert)
    assert built.settled_score == anomaly.score and from_request.settled_score == anomaly.score
    cautioned = StoredPrior(0.1, anomaly.prior_map(), cautions=("reference 2 of 3 looks unlike the others",))
    assert reasoning_input(image, expert=cautioned).settled_score is None
    assert (
        reasoning_input(image, expert=StoredPrior(0.5, anomaly.prior_map(), notes=("aspect",))).settled_score
        is None
    )
    assert reasoning_input(image).settled_score is None

    findings = ExpertFindings.of(anomaly, heatmap=False)
    assert (
        findings.score == anomaly.score
        and findings.regions == anomaly.regions
        and findings.heatmap_png is None
    )
    assert ExpertFindings.of(anomaly, heatmap=True).heatmap_png == anomaly.heatmap_png
