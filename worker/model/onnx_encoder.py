"""The text encoder exported to ONNX, optionally int8, run by ONNX Runtime on the CPU.

:func:`export_onnx` exports the transformer of an encoder directory (``input_ids``,
``attention_mask`` -> ``last_hidden_state``, batch and sequence axes dynamic) and, for
``quantize="int8"``, quantises it with ONNX Runtime's dynamic quantisation (int8 weights of the
matrix products; activations quantised per batch at run time). The file records the encoder's
fingerprint and its quantisation in its metadata.

:class:`OnnxPhraseEncoder` is a :class:`~worker.model.vectors.PhraseEncoder` over such a file:
the encoder directory's tokenizer, the same sub-batches as
:class:`~worker.model.phrase_encoder.TorchPhraseEncoder` (sorted by length, each padded to its
longest phrase) and the same pooling function. Its encoder id names the runtime, the
quantisation and a digest of the ONNX file, so its vectors never share keys with torch's.

``onnx``, ``onnxscript`` (the exporter) and ``onnxruntime`` are the optional extra ``[onnx]``;
they are imported by the functions that need them, never at import.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.errors import ModelError
from worker.model.encoder import CPU_BATCH, POOLINGS, encode, length_batches, load_tokenizer
from worker.model.phrase_encoder import PHRASE_MAX_TOKENS, encoder_fingerprint

__all__ = ["QUANTIZE_MODES", "OnnxPhraseEncoder", "export_onnx"]

QUANTIZE_MODES = ("int8", "none")
OPSET = 18
# metadata keys written into the ONNX file
META_FINGERPRINT = "intent.encoder_fingerprint"
META_QUANTIZE = "intent.quantize"
META_PER_CHANNEL = "intent.per_channel"
_INPUTS = ("input_ids", "attention_mask")
_OUTPUT = "last_hidden_state"


def export_onnx(encoder_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                quantize: str = "int8", per_channel: bool = True, opset: int = OPSET) -> Path:
    """Export the transformer of ``encoder_dir`` to ``out_path`` (one self-contained file).

    ``quantize``: ``int8`` (dynamic quantisation, signed int8 weights) or ``none`` (float32).
    ``per_channel``: int8 weights with a scale per output channel (on MiniLM-L6 and the REES46
    dev slice, per-tensor scales gave window-text vectors a mean cosine of 0.952 to torch's,
    per-channel 0.992; docs/benchmarks.md).
    Writes atomically (a temporary file beside ``out_path``, renamed); returns ``out_path``.
    A missing ``onnx``/``onnxruntime`` is a ModelError that names the extra.
    """
    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    onnx = _require("onnx")
    if quantize == "int8":
        _require("onnxruntime")
    import torch
    from transformers import AutoModel

    encoder_dir, out_path = Path(encoder_dir), Path(out_path)
    fingerprint = encoder_fingerprint(encoder_dir)
    try:
        model = AutoModel.from_pretrained(encoder_dir, local_files_only=True).float().eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load the encoder from {encoder_dir}: {exc}") from exc
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-export-", dir=out_path.parent) as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _export_fp32(_hidden_states(model), fp32, opset=opset, torch=torch)
        final = fp32
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            final = Path(tmp) / "int8.onnx"
            with _quiet_root_log():  # its advice to pre-process, printed on every call
                quantize_dynamic(fp32, final, weight_type=QuantType.QInt8,
                                 per_channel=per_channel)
        proto = onnx.load(str(final))
        meta = {p.key: p.value for p in proto.metadata_props}
        meta.update({META_FINGERPRINT: fingerprint, META_QUANTIZE: quantize})
        if quantize == "int8":
            meta[META_PER_CHANNEL] = str(per_channel).lower()
        del proto.metadata_props[:]
        for key, value in sorted(meta.items()):
            proto.metadata_props.add(key=key, value=value)
        staged = Path(tmp) / "out.onnx"
        onnx.save(proto, str(staged))
        os.replace(staged, out_path)
    return out_path


class OnnxPhraseEncoder:
    """Phrases -> float32 vectors with an ONNX Runtime session over an exported encoder.

    ``onnx_path``: a file written by :func:`export_onnx`; ``encoder_dir``: the directory it was
    exported from (its tokenizer and config are used; its fingerprint must match the file's).
    ``threads``: ONNX Runtime's intra-op threads (None: its default, all cores); ``spin``: let
    them busy-wait between calls (faster back-to-back calls, but they burn the cores the
    event loop and other work share). The id is
    ``<name>-onnx-<int8|fp32>-<digest>-<pooling>-<max_tokens>``, the digest over the encoder's
    fingerprint and the ONNX file's bytes. Blocking; one thread at a time.
    """

    def __init__(self, onnx_path: str | os.PathLike[str], encoder_dir: str | os.PathLike[str],
                 *, name: str | None = None, pooling: str = "mean",
                 max_tokens: int = PHRASE_MAX_TOKENS, batch_size: int | None = None,
                 threads: int | None = None, spin: bool = False,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
        batch_size = CPU_BATCH if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ort = _require("onnxruntime")
        onnx_path, encoder_dir = Path(onnx_path), Path(encoder_dir)
        if not onnx_path.is_file():
            raise ModelError(f"ONNX encoder {onnx_path} does not exist")
        config = _read_json(encoder_dir / "config.json")
        self.tokenizer = load_tokenizer(encoder_dir)
        pad = self.tokenizer.pad_token_id
        self.pad_id = 0 if pad is None else int(pad)
        self._dim = int(config["hidden_size"])
        self.max_tokens = min(max_tokens, int(config.get("max_position_embeddings", 512)))
        self.pooling = pooling
        self.batch_size = batch_size

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        if not spin:  # idle pool threads sleep instead of spinning on cores the loop needs
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=options,
                                                providers=list(providers))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load the ONNX encoder {onnx_path}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        fingerprint = encoder_fingerprint(encoder_dir)
        if meta.get(META_FINGERPRINT) != fingerprint:
            raise ModelError(f"{onnx_path} was not exported from {encoder_dir} (encoder "
                             f"fingerprint {meta.get(META_FINGERPRINT)!r}, directory "
                             f"{fingerprint!r})")
        self.quantize = meta.get(META_QUANTIZE, "none")
        names = {i.name for i in self.session.get_inputs()}
        if names != set(_INPUTS):
            raise ModelError(f"{onnx_path}: inputs {sorted(names)}, expected {list(_INPUTS)}")
        digest = hashlib.blake2b(fingerprint.encode(), digest_size=8, usedforsecurity=False)
        with onnx_path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        label = "int8" if self.quantize == "int8" else "fp32"
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name or encoder_dir.name)[:40] or "encoder"
        self._id = f"{safe_name}-onnx-{label}-{digest.hexdigest()}-{pooling}-{self.max_tokens}"

    @property
    def encoder_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, phrases: Sequence[str]) -> np.ndarray:
        import torch

        from worker.model.encoder import pool

        out = np.empty((len(phrases), self.dim), dtype=np.float32)
        if not phrases:
            return out
        ids = encode(self.tokenizer, phrases, self.max_tokens)
        for idx, input_ids, mask in length_batches(ids, self.batch_size, self.pad_id):
            hidden = self.session.run([_OUTPUT], {"input_ids": input_ids.numpy(),
                                                  "attention_mask": mask.numpy()})[0]
            out[idx] = pool(torch.from_numpy(hidden), mask, self.pooling).numpy()
        return out


def _hidden_states(model: Any) -> Any:
    """``model`` as an ``nn.Module`` of ``(input_ids, attention_mask) -> last_hidden_state``."""
    from torch import nn

    class HiddenStates(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return HiddenStates(model).eval()


def _export_fp32(module: Any, path: Path, *, opset: int, torch: Any) -> None:
    """``torch.onnx.export`` (the dynamo exporter) with dynamic batch and sequence axes."""
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0  # one padded row, so no all-ones shortcut is traced
    example = (torch.full((2, 8), 1000, dtype=torch.long), mask)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            torch.onnx.export(module, example, str(path), input_names=list(_INPUTS),
                              output_names=[_OUTPUT], opset_version=opset, dynamo=True,
                              external_data=False, verbose=False,
                              dynamic_shapes={"input_ids": {0: batch, 1: seq},
                                              "attention_mask": {0: batch, 1: seq}})
    except ImportError as exc:
        raise ModelError(f"exporting to ONNX needs the [onnx] extra ({exc})") from exc


@contextlib.contextmanager
def _quiet_root_log() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModelError(f"{module} is not installed: pip install 'intent-worker[onnx]'"
                         ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
