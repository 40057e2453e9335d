"""Settings: defaults, RIAD_* variables, QDRANT_URL, TOML files and typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from riad_agent.errors import ConfigurationError
from riad_agent.imaging import ImagePolicy
from riad_agent.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RIAD_CONFIG", "QDRANT_URL", "RIAD_QDRANT_URL", "RIAD_DATA_DIR", "RIAD_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_embedded_and_local() -> None:
    settings = load_settings()
    assert settings.qdrant_url is None
    assert settings.vlm_model == "builtin"
    assert settings.qdrant_path == settings.data_dir / "qdrant"
    assert "riad-agent" in str(settings.data_dir)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:6333")
    monkeypatch.setenv("RIAD_ALLOWED_ROOTS", f'["{tmp_path}"]')
    settings = load_settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.qdrant_url == "http://127.0.0.1:6333"
    assert ImagePolicy.from_settings(settings).allowed_roots == (tmp_path,)


def test_toml_file_and_priority(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text('device = "cpu"\nexpert_image_size = 224\n')
    monkeypatch.setenv("RIAD_CONFIG", str(config))
    assert load_settings().expert_image_size == 224
    monkeypatch.setenv("RIAD_EXPERT_IMAGE_SIZE", "320")
    assert load_settings().expert_image_size == 320
    assert load_settings(expert_image_size=128).expert_image_size == 128


def test_riad_toml_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "riad.toml").write_text('collection = "mine"\n')
    assert load_settings().collection == "mine"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('device = "tpu"\n', "device"),
        ("expert_image_size = 10\n", "expert_image_size"),
        ("unknown_key = 1\n", "unknown_key"),
        ("device = \n", "cannot read configuration"),
    ],
)
def test_bad_configuration_is_a_typed_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    monkeypatch.setenv("RIAD_CONFIG", str(config))
    with pytest.raises(ConfigurationError, match=message):
        load_settings()


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIAD_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings()


def test_a_list_setting_written_plainly_in_the_environment_says_it_is_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIAD_ALLOWED_ROOTS", "/data/parts")
    with pytest.raises(ConfigurationError, match=r"RIAD_ALLOWED_ROOTS is JSON, e\.g\."):
        load_settings()
