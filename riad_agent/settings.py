"""Settings, read once at the edge (CLI, server, tool factory) and passed down.

Sources, highest priority first: keyword arguments, ``RIAD_*`` environment variables (``QDRANT_URL``
is honoured too), a TOML file (``RIAD_CONFIG`` or ``./riad.toml``), the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from riad_agent.errors import ConfigurationError, first_problem


def default_data_dir() -> Path:
    """Where the embedded Qdrant store, expert banks and model caches live by default."""
    return Path(platformdirs.user_cache_dir("riad-agent"))


def _config_file() -> Path | None:
    explicit = os.environ.get("RIAD_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("riad.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """All configuration of riad-agent. Every field can be set as ``RIAD_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="RIAD_", extra="forbid", validate_default=True, populate_by_name=True
    )

    data_dir: Path = Field(default_factory=default_data_dir)

    # knowledge
    qdrant_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("qdrant_url", "RIAD_QDRANT_URL", "QDRANT_URL"),
        description="Qdrant server URL; unset means embedded local mode under data_dir.",
    )
    qdrant_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("qdrant_api_key", "RIAD_QDRANT_API_KEY", "QDRANT_API_KEY")
    )
    qdrant_timeout_s: float = Field(default=5.0, gt=0)
    collection: str = "riad_knowledge"
    knowledge_lock_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a write to the embedded knowledge store waits for another process's write.",
    )
    embedder: str = Field(
        default="minilm",
        description="'minilm' (offline default), 'hashing' (no model, for tests) or a local model path.",
    )

    # vision expert
    expert_backbone: str = "efficientnet-lite0"
    expert_image_size: int = Field(default=256, ge=64, le=1024)

    # reasoning
    vlm_model: str = Field(default="builtin", description="'builtin', a hub id or a local path.")
    vlm_max_pixels: int = Field(
        default=1280 * 28 * 28,
        gt=0,
        description="Pixels a Qwen-VL image is resized to at most before its patches are cut (MMAD's cap).",
    )
    model_cache_dir: Path = Field(
        default_factory=lambda: default_data_dir() / "models",
        description="Converted model weights (the builtin model's language model); shared by data dirs.",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16", "int8"] = "auto"
    reasoner_url: str | None = Field(
        default=None, description="URL of a reasoner service (riad serve reasoner); unset = in-process."
    )
    reasoner_token: str | None = Field(default=None, description="Bearer token for the reasoner service.")
    reasoner_timeout_s: float = Field(default=120.0, gt=0)

    # inputs
    allowed_roots: list[Path] | None = Field(
        default=None, description="Image paths must lie under one of these; None = any path."
    )
    allow_urls: bool = False
    max_image_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)

    expert_cache_max_mb: int = Field(
        default=512,
        ge=1,
        description="Size limit of the expert's bank cache on disk; least recently used banks go first.",
    )

    # graph
    checkpointer: Literal["memory", "sqlite", "postgres", "none"] = "memory"
    checkpoint_dsn: str | None = None
    blob_max_mb: int = Field(
        default=1024,
        ge=1,
        description="Size limit of the blob store (images sent as bytes, expert maps); least recently used go first.",
    )
    review_threshold: float | None = Field(
        default=None, ge=0, le=0.5, description="Ask a human when |score - 0.5| is below this."
    )

    @field_validator("data_dir", "model_cache_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file()
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @property
    def qdrant_path(self) -> Path:
        """On-disk folder of the embedded Qdrant store."""
        return self.data_dir / "qdrant"

    @property
    def cache_dir(self) -> Path:
        """Folder for derived artefacts (expert banks, compiled prompts)."""
        return self.data_dir / "cache"

    @property
    def blob_dir(self) -> Path:
        """The content-addressed blob store of the graphs (images and arrays by SHA-256)."""
        return self.data_dir / "blobs"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and config file; typed error on bad values."""
    config = _config_file()
    if config is not None and not config.is_file():
        raise ConfigurationError(f"config file {config} does not exist (set by RIAD_CONFIG)")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        where, problem = first_problem(exc, "settings")
        variable = f"RIAD_{where.split('.')[0].upper()}"
        if "valid list" in problem:
            problem += f" (in the environment, {variable} is JSON, e.g. {variable}='[\"/data/parts\"]')"
        raise ConfigurationError(f"invalid setting {where} ({variable}): {problem}") from exc
    except (OSError, ValueError) as exc:  # malformed TOML
        raise ConfigurationError(f"cannot read configuration: {exc}") from exc
