"""The encoder exported to ONNX (float32 and dynamic int8) against the torch encoder, on the
tiny random encoder: same tokens, sub-batches and pooling, so float32 gives torch's vectors;
int8 gives close ones; every variant has its own encoder id."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
from worker.errors import ModelError
from worker.model.phrase_encoder import TorchPhraseEncoder
from worker.vectors import key_prefix

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason=f"{_module} is not installed (the [onnx] extra)")

from worker.model.onnx_encoder import OnnxPhraseEncoder, export_onnx  # noqa: E402

# phrases of different token lengths, so sub-batches of 2 are padded
PHRASES = ["viewed electronics smartphone, apple, price 1000-2000", 'searched "sofa grey"',
           "added to cart Oslo sofa, ikea, price 500-1000 EUR", "viewed a product",
           "purchased appliances kitchen refrigerators, samsung, price 200-500",
           "removed from cart", "x"]
FP32_MIN_COSINE = 0.9999
FP32_MAX_ABS = 1e-4
# int8 weights and activations: stated bound for the tiny random encoder (it measures about
# 0.9999; MiniLM-L6 on the REES46 phrases is in docs/benchmarks.md)
INT8_MIN_COSINE = 0.99


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("onnx")
    encoder = write_tiny_encoder(root / "encoder", max_positions=64)
    return {"encoder": encoder,
            "none": export_onnx(encoder, root / "fp32.onnx", quantize="none"),
            "int8": export_onnx(encoder, root / "int8.onnx", quantize="int8")}


@pytest.fixture(scope="module")
def torch_vectors(tiny: dict[str, Path]) -> np.ndarray:
    return TorchPhraseEncoder.from_directory(tiny["encoder"], name="tiny",
                                             batch_size=2).encode(PHRASES)


def test_export_writes_float32_and_a_smaller_int8_file(tiny: dict[str, Path]) -> None:
    import onnx

    sizes = {mode: tiny[mode].stat().st_size for mode in ("none", "int8")}
    assert sizes["int8"] < sizes["none"]
    for mode in ("none", "int8"):
        meta = {p.key: p.value for p in onnx.load(str(tiny[mode])).metadata_props}
        assert meta["intent.quantize"] == mode
    int8_ops = {n.op_type for n in onnx.load(str(tiny["int8"])).graph.node}
    assert int8_ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}


def test_float32_gives_the_torch_vectors(tiny: dict[str, Path],
                                         torch_vectors: np.ndarray) -> None:
    enc = OnnxPhraseEncoder(tiny["none"], tiny["encoder"], name="tiny", batch_size=2, threads=1)
    out = enc.encode(PHRASES)
    assert out.dtype == np.float32 and out.shape == (len(PHRASES), TINY_DIM)
    assert cosines(out, torch_vectors).min() > FP32_MIN_COSINE
    np.testing.assert_allclose(out, torch_vectors, atol=FP32_MAX_ABS)


def test_int8_stays_close_to_the_torch_vectors(tiny: dict[str, Path],
                                               torch_vectors: np.ndarray) -> None:
    enc = OnnxPhraseEncoder(tiny["int8"], tiny["encoder"], name="tiny", batch_size=2, threads=1)
    out = enc.encode(PHRASES)
    assert cosines(out, torch_vectors).min() > INT8_MIN_COSINE
    assert not np.allclose(out, torch_vectors, atol=FP32_MAX_ABS)  # it really is quantised


def test_rows_come_back_in_input_order_whatever_the_batch(tiny: dict[str, Path]) -> None:
    enc = OnnxPhraseEncoder(tiny["none"], tiny["encoder"], batch_size=3, threads=1)
    whole = enc.encode(PHRASES)
    np.testing.assert_allclose(enc.encode(PHRASES[::-1]), whole[::-1], atol=1e-5)
    one = OnnxPhraseEncoder(tiny["none"], tiny["encoder"], batch_size=1, threads=1)
    np.testing.assert_allclose(one.encode(PHRASES), whole, atol=1e-5)
    assert enc.encode([]).shape == (0, TINY_DIM)


def test_encoder_ids_differ_by_runtime_and_quantisation(tiny: dict[str, Path]) -> None:
    torch_id = TorchPhraseEncoder.from_directory(tiny["encoder"], name="tiny").encoder_id
    fp32 = OnnxPhraseEncoder(tiny["none"], tiny["encoder"], name="tiny").encoder_id
    int8 = OnnxPhraseEncoder(tiny["int8"], tiny["encoder"], name="tiny").encoder_id
    assert len({torch_id, fp32, int8}) == 3
    assert "onnx-int8" in int8 and "onnx-fp32" in fp32 and "onnx" not in torch_id
    for encoder_id in (torch_id, fp32, int8):
        key_prefix(encoder_id)  # a valid store key prefix
    assert OnnxPhraseEncoder(tiny["int8"], tiny["encoder"], name="tiny").encoder_id == int8
    shorter = OnnxPhraseEncoder(tiny["int8"], tiny["encoder"], name="tiny", max_tokens=16)
    assert shorter.encoder_id != int8


def test_a_file_from_another_encoder_is_refused(tiny: dict[str, Path], tmp_path: Path) -> None:
    other = write_tiny_encoder(tmp_path / "other", seed=1, max_positions=64)
    with pytest.raises(ModelError, match="not exported from"):
        OnnxPhraseEncoder(tiny["int8"], other)


def test_an_unknown_quantisation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantize"):
        export_onnx(tmp_path, tmp_path / "x.onnx", quantize="int4")


def test_importing_the_module_loads_no_onnx_runtime() -> None:
    code = ("import sys, worker.model.onnx_encoder; "
            "bad = [m for m in ('onnx', 'onnxruntime', 'onnxscript') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
