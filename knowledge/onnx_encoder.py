"""MiniLM exported once to ONNX and run by onnxruntime: the query path of the knowledge search.

A short query runs several times faster through onnxruntime than through transformers' eager BERT
on one CPU thread (``benchmarks/knowledge_search.py``; figures in ``docs/results.md``). Outputs agree
with torch to float rounding, so document vectors embedded by torch and query vectors embedded here
live in the same space (a test checks it).

The export runs once per model (``torch.onnx.export``, needs the ``onnx`` package) into the model
cache folder, written atomically; only ``onnxruntime`` is needed afterwards. It exports a freshly
loaded copy of the model: the exporter may leave the module it traces altered. The warnings the
export is known to raise (tracer, legacy exporter, opset notes) are kept out of the user's terminal.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
_EXPORT_LOCK = threading.Lock()


def model_fingerprint(folder: Path) -> str:
    """A short hash of the model's config and weight file sizes (names the exported file)."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


@contextmanager
def _expected_export_warnings_ignored() -> Iterator[None]:
    """Silence exactly the warnings ``torch.onnx.export`` raises for this model, nothing else."""
    import torch

    with warnings.catch_warnings():
        # the trace fixes Python-level checks on shapes; they hold for every input (tested against torch)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the TorchScript exporter is the one this export asks for (dynamo=False)
        legacy = "You are using the legacy TorchScript-based ONNX export"
        warnings.filterwarnings("ignore", message=legacy, category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        # a note on how opset 17 spells advanced indexing
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        yield


def export_onnx(folder: Path, target: Path) -> Path:
    """Export the encoder at ``folder`` (last hidden state of ids + mask) to ``target``."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
            )
            hidden: torch.Tensor = out.last_hidden_state
            return hidden

    example = torch.tensor([[101, 2003, 2045, 102]])
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 1: "tokens"}
    with _expected_export_warnings_ignored():
        torch.onnx.export(
            LastHidden(model),
            (example, torch.ones_like(example)),
            str(partial),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )
    partial.replace(target)
    return target


class OnnxEncoder:
    """``__call__(input_ids, attention_mask) -> last hidden state`` (numpy), one CPU thread."""

    def __init__(self, folder: Path, cache_dir: Path) -> None:
        import onnxruntime as ort

        path = cache_dir / f"minilm-{model_fingerprint(folder)}.onnx"
        with _EXPORT_LOCK:
            if not path.is_file():
                export_onnx(folder, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        hidden: np.ndarray = self.session.run(None, feeds)[0]
        return hidden


def open_onnx_encoder(folder: Path, cache_dir: Path) -> OnnxEncoder | None:
    """The ONNX encoder, or None (logged) when onnxruntime/onnx are missing or the export fails."""
    try:
        return OnnxEncoder(folder, cache_dir)
    except ImportError as exc:
        log.info("onnxruntime path unavailable (%s); queries use torch", exc)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("could not prepare the ONNX query encoder (%s); queries use torch", exc)
    return None
