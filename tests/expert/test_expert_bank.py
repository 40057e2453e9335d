"""Memory bank: coreset coverage, chunked nearest neighbours, the disk cache."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from riad_agent.data.synthetic import generate_sample
from riad_agent.expert import ExpertConfig, PatchCoreExpert
from riad_agent.expert.bank import BankCache, bank_key, greedy_coreset, nearest_distances


def _clusters(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, 32, generator=g) * 10
    sizes = [400, 200, 100, 40, 10, 3]  # very unequal: random sampling misses the small ones
    points = torch.cat(
        [c + 0.1 * torch.randn(n, 32, generator=g) for c, n in zip(centres, sizes, strict=True)]
    )
    labels = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    return points, labels


def test_coreset_has_the_requested_size_and_covers_every_cluster() -> None:
    points, labels = _clusters()
    keep = greedy_coreset(points, 6, projection_dim=16, seed=1)
    assert keep.shape == (6,) and len(set(keep.tolist())) == 6
    assert sorted(labels[keep].tolist()) == [0, 1, 2, 3, 4, 5]
    covered = nearest_distances(points, points[keep]).max()
    g = torch.Generator().manual_seed(3)
    random_pick = torch.randperm(points.shape[0], generator=g)[:6]
    assert covered < 2.0 < nearest_distances(points, points[random_pick]).max()
    assert torch.equal(greedy_coreset(points, 1000), torch.arange(points.shape[0]))


def test_chunked_nearest_distances_match_brute_force_and_exclusion() -> None:
    g = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(50, 8, generator=g), torch.randn(70, 8, generator=g)
    expected = torch.cdist(queries, bank).min(dim=1).values
    got = nearest_distances(queries, bank, chunk=7, bank_chunk=9)
    torch.testing.assert_close(got, expected)
    owners = torch.arange(70) % 5
    got = nearest_distances(queries, bank, chunk=11, bank_chunk=13, exclude=owners, exclude_owner=2)
    torch.testing.assert_close(got, torch.cdist(queries, bank[owners != 2]).min(dim=1).values)


@pytest.fixture(scope="module")
def references() -> list:
    return [generate_sample("synthetic/tile", None, seed=s, size=128).image for s in range(3)]


def _config() -> ExpertConfig:
    return ExpertConfig(features={"image_size": 128}, heatmap=False)


def test_second_fit_loads_the_bank_from_disk_without_recomputing(tmp_path: Path, references: list) -> None:
    first = PatchCoreExpert(_config(), cache_dir=tmp_path)
    bank = first.fit(references)
    assert first.stats["bank_builds"] == 1
    assert len(list(tmp_path.glob("bank-*.safetensors"))) == 1
    assert first.fit(list(reversed(references))) is bank  # order-independent key, memory hit
    assert first.stats == {"bank_builds": 1, "disk_hits": 0, "memory_hits": 1}

    second = PatchCoreExpert(_config(), cache_dir=tmp_path)
    with mock.patch.object(PatchCoreExpert, "_build", side_effect=AssertionError("recomputed")) as build:
        loaded = second.fit(references)
    build.assert_not_called()
    assert second.stats["disk_hits"] == 1
    torch.testing.assert_close(loaded.features, bank.features)
    assert loaded.calibration == pytest.approx(bank.calibration)
    assert loaded.grid == bank.grid and loaded.n_references == 3


def test_cache_key_depends_on_content_backbone_and_config(references: list) -> None:
    key = bank_key(references, "b", "c")
    assert key == bank_key(list(reversed(references)), "b", "c")
    other = [generate_sample("synthetic/tile", None, seed=9, size=128).image, *references[1:]]
    assert (
        len({key, bank_key(other, "b", "c"), bank_key(references, "x", "c"), bank_key(references, "b", "y")})
        == 4
    )
    assert _config().key() != ExpertConfig(features={"image_size": 128}, top_k=5).key()


def test_corrupt_cache_file_is_rebuilt(tmp_path: Path, references: list) -> None:
    expert = PatchCoreExpert(_config(), cache_dir=tmp_path)
    expert.fit(references)
    (path,) = tmp_path.glob("bank-*.safetensors")
    path.write_bytes(b"not a safetensors file")
    assert BankCache(tmp_path).load(path.stem.removeprefix("bank-")) is None
    fresh = PatchCoreExpert(_config(), cache_dir=tmp_path)
    fresh.fit(references)
    assert fresh.stats["bank_builds"] == 1


def test_large_banks_are_subsampled_by_the_coreset(references: list) -> None:
    config = ExpertConfig(
        features={"image_size": 128},
        coreset_above=300,
        coreset_ratio=0.25,
        coreset_min=100,
        heatmap=False,
        fixed_views=0,  # the bank holds the references' own patches only
        pose="fixed",
    )
    bank = PatchCoreExpert(config).fit(references)
    full = 3 * 16 * 16
    assert len(bank) == int(0.25 * full)
    assert set(bank.owners.tolist()) == {0, 1, 2}


def test_open_expert_reads_settings_at_the_edge(tmp_path: Path) -> None:
    from riad_agent.expert import open_expert
    from riad_agent.protocols import Expert
    from riad_agent.settings import Settings

    expert = open_expert(Settings(data_dir=tmp_path, expert_image_size=128))
    assert isinstance(expert, Expert)
    assert expert.config.features.image_size == 128
    assert expert.cache is not None and expert.cache.folder == tmp_path / "cache" / "expert"


def test_intensity_normalisation_removes_global_brightness_and_contrast() -> None:
    from PIL import Image

    from riad_agent.backbones import images_to_batch

    base = generate_sample("synthetic/fabric", None, seed=1, size=64).image
    array = torch.from_numpy(np.asarray(base, dtype=np.float32))
    darker = Image.fromarray((array * 0.6 + 20).round().clamp(0, 255).byte().numpy(), mode="RGB")
    plain = images_to_batch([base, darker], 64)
    normalised = images_to_batch([base, darker], 64, normalise=True)
    assert (plain[0] - plain[1]).abs().mean() > 0.05
    assert (normalised[0] - normalised[1]).abs().mean() < 0.01
    assert normalised.mean().item() == pytest.approx(0.5, abs=0.02)


def test_the_disk_cache_stays_under_its_size_limit_dropping_the_least_recently_used(
    tmp_path: Path, references: list
) -> None:
    expert = PatchCoreExpert(ExpertConfig(memory_banks=0), cache_dir=tmp_path)
    bank = expert.fit(references)
    one = BankCache(tmp_path).size_bytes()
    cache = BankCache(tmp_path, max_bytes=int(2.5 * one))
    for key in ("a", "b"):
        cache.save(key, bank)
    cache.load("a")  # "a" is now more recently used than the first bank and "b"
    cache.save("c", bank)
    names = sorted(path.name for path in tmp_path.glob("bank-*.safetensors"))
    assert names == ["bank-a.safetensors", "bank-c.safetensors"]
    assert cache.size_bytes() <= 2.5 * one


def test_a_bank_bigger_than_the_limit_is_kept_until_the_next_save(tmp_path: Path, references: list) -> None:
    bank = PatchCoreExpert(ExpertConfig(memory_banks=0)).fit(references)
    cache = BankCache(tmp_path, max_bytes=1)
    cache.save("a", bank)
    assert cache.load("a") is not None
    cache.save("b", bank)
    assert cache.load("a") is None and cache.load("b") is not None
