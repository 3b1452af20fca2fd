"""evaluate() labels and windows by the model's own config sections, not by defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.synthetic import synthetic_events
from tests.support.tiny_model import TINY_DIM, write_tiny_encoder
from worker.dataset import DEFAULT_HORIZON_S, build_examples, user_split
from worker.errors import ConfigError
from worker.evaluation.evaluate import evaluate
from worker.features import FEATURE_NAMES
from worker.model import (
    FusionHead,
    LabelSection,
    ModelConfig,
    SplitSection,
    WindowSection,
    save_model_dir,
)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder", max_positions=64)


def model_dir(root: Path, encoder: Path, **sections: object) -> Path:
    torch.manual_seed(0)
    head = FusionHead(TINY_DIM, len(FEATURE_NAMES), hidden=4, dropout=0.0)
    config = ModelConfig(name="tiny", version="1", text_dim=TINY_DIM, max_tokens=48,
                         head_hidden=4, head_dropout=0.0, **sections)
    return save_model_dir(root / "model", head=head, config=config, encoder=encoder)


def test_label_window_and_split_come_from_the_config(encoder: Path, tmp_path: Path) -> None:
    events = synthetic_events(users=40, seed=5)
    label = LabelSection(horizon_s=120, definition="a purchase within two minutes")
    window = WindowSection(max_events=2, seconds=300)
    split = SplitSection(seed="other-seed", val_frac=0.5, test_frac=0.0)
    path = model_dir(tmp_path, encoder, label=label, window=window, split=split)
    result = evaluate(events, model_dir=path, report_dir=tmp_path / "report", source={},
                      users="val", device="cpu", progress=False)
    assert result.meta["label"] == label.to_json()
    assert result.meta["window"] == {"max_events": 2, "seconds": 300}
    expected = [e for e in build_examples(events, horizon_s=120, max_events=2,
                                          window_seconds=300)
                if user_split(e.user_id, seed="other-seed", val_frac=0.5) == "val"]
    assert result.meta["examples"] == len(expected)
    assert result.meta["distinct_users"] == len({e.user_id for e in expected})


def test_a_model_without_sections_gets_the_dataset_defaults(encoder: Path,
                                                             tmp_path: Path) -> None:
    events = synthetic_events(users=30, seed=6)
    path = model_dir(tmp_path, encoder)
    result = evaluate(events, model_dir=path, report_dir=tmp_path / "report", source={},
                      device="cpu", progress=False)
    assert result.meta["label"]["horizon_s"] == DEFAULT_HORIZON_S
    assert result.meta["window"] == {"max_events": 50, "seconds": 3600}
    with pytest.raises(ConfigError, match="records no user split"):
        evaluate(events, model_dir=path, report_dir=tmp_path / "r2", source={}, users="val",
                 device="cpu", progress=False)
