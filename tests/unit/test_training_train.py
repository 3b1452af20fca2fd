"""train() end to end on a tiny random encoder and ~200 synthetic events: the pooled window
model (the default) and the text window model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tests.support.synthetic import synthetic_events
from tests.support.tiny_model import write_tiny_encoder
from worker.dataset import build_examples, user_split
from worker.dataset.examples import LABEL_DEFINITION
from worker.features import build_input
from worker.model import SplitSection, WindowSection, load_model, read_config
from worker.model.event_model import EventVectorModel
from worker.training import load_baseline, train

SMALL = {"max_tokens": 48, "max_chars": 300, "head_hidden": 8, "progress": False}
TEXT = {**SMALL, "window_model": "text"}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_encoder(tmp_path_factory.mktemp("tiny") / "encoder", max_positions=64)


@pytest.fixture(scope="module")
def events() -> list[dict]:
    events = synthetic_events()
    assert 150 <= len(events) <= 250
    return events


@pytest.fixture(scope="module")
def trained(encoder: Path, events: list[dict], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out") / "model"
    report = train(events, out_dir=out, name="tiny-intent", version="9.9.9",
                   encoder_dir_or_package=encoder, **SMALL)
    return out, report


@pytest.fixture(scope="module")
def trained_text(encoder: Path, events: list[dict], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("out") / "model"
    report = train(events, out_dir=out, name="tiny-intent", version="9.9.9",
                   encoder_dir_or_package=encoder, epochs=15, patience=5, **TEXT)
    return out, report


def _val_scores(model, events: list[dict]) -> tuple[list[int], list[float]]:
    examples = build_examples(events, max_events=50, window_seconds=3600)
    val = [e for e in examples if user_split(e.user_id) == "val"]
    price = getattr(model, "phrase_price", None)
    scores = model.score([build_input(e.window, max_chars=model.max_chars, phrase_price=price)
                          for e in val])
    return [e.label for e in val], scores


def test_model_dir_loads_and_scores(trained, events: list[dict]) -> None:
    out, report = trained
    assert report.out_dir == out and report.version == "9.9.9"
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "pooled.safetensors", "metrics.json", "README.md",
            "baseline.joblib", "baseline.json"} <= files
    assert "head.safetensors" not in files
    model = load_model(out, device="cpu")
    assert isinstance(model, EventVectorModel)
    assert (model.name, model.version) == ("tiny-intent", "9.9.9")
    # the saved head is the evaluated one: val PR-AUC recomputed from the loaded model, whose
    # vectors and pooling are the worker's
    labels, scores = _val_scores(model, events)
    assert all(0 <= s <= 1 for s in scores)
    pr_auc = average_precision_score(labels, scores)
    assert pr_auc == pytest.approx(report.metrics["val"]["bert"]["pr_auc"], abs=1e-9)


def test_pooled_config_and_metrics(trained) -> None:
    out, report = trained
    config = read_config(out)
    assert config.kind == "pooled" and config.training["window_model"] == "pooled"
    assert config.window_model.phrase_price == "bucket"
    assert config.training["components"] == 8
    kept = config.training["pooled"]["components_kept"]  # numerically empty axes left out
    assert 1 <= kept["mean"] <= 8 and 1 <= kept["newest"] <= 8
    assert len(config.training["pooled"]["standardised_coefficients"]) == \
        len(config.feature_names) + kept["mean"] + kept["newest"] + 1
    assert config.training["phrases"]["distinct_phrases"] > 0
    cv = report.metrics["user_cv"]
    if "skipped" not in cv:  # the ablation is refitted on every fold and compared
        assert set(cv["features_only"]) == {"pr_auc", "roc_auc", "brier"}
        assert cv["pr_auc_diff_bert_minus_features_only"]["folds_compared"] == \
            len(cv["per_fold"])
        card = (out / "README.md").read_text()
        assert "| ablation: the same head, context features only |" in card
        assert "PR-AUC difference BERT - the ablation" in card


def test_pooled_refuses_text_options(encoder: Path, events: list[dict],
                                     tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window_model='text'"):
        train(events, out_dir=tmp_path / "x", head="mlp", encoder_dir_or_package=encoder,
              **SMALL)


def test_pooled_finetune_end_to_end(encoder: Path, events: list[dict], tmp_path: Path) -> None:
    """Fine-tuned through the pooled model: the encoder is saved with the model, the saved
    model serves the reported validation scores, and the folds compare it with the frozen
    encoder."""
    out = tmp_path / "ft"
    report = train(events, out_dir=out, finetune=True, epochs=1, time_frac=None,
                   encoder_dir_or_package=encoder, **SMALL)
    config = read_config(out)
    assert config.kind == "pooled" and config.encoder_path == "encoder"
    assert config.training["mode"] == "fine-tuned"
    assert report.metrics["training"]["finetune"]["best_epoch"] in (0, 1)
    model = load_model(out, device="cpu")
    labels, scores = _val_scores(model, events)
    assert average_precision_score(labels, scores) == pytest.approx(
        report.metrics["val"]["bert"]["pr_auc"], abs=1e-6)
    cv = report.metrics["user_cv"]
    if "skipped" not in cv:
        assert "frozen" in cv and "pr_auc_diff_bert_minus_frozen" in cv


def test_text_model_dir_loads_and_scores(trained_text, events: list[dict]) -> None:
    out, report = trained_text
    assert {"config.json", "head.safetensors", "encoder"} <= {p.name for p in out.iterdir()}
    model = load_model(out, device="cpu")
    labels, scores = _val_scores(model, events)
    pr_auc = average_precision_score(labels, scores)
    assert pr_auc == pytest.approx(report.metrics["val"]["bert"]["pr_auc"], abs=1e-6)


def test_config_records_label_data_and_settings(trained_text, events: list[dict]) -> None:
    out, report = trained_text
    config = read_config(out)
    assert config.trained is True and config.extra == {}
    assert config.label.definition == LABEL_DEFINITION
    assert config.label.horizon_s == 600
    assert config.data.fingerprint.startswith("sha256:")
    assert config.data.events == len(events)
    assert config.window == WindowSection(max_events=50, seconds=3600)
    assert config.split == SplitSection(seed="intent-v1", val_frac=0.2, test_frac=0.0)
    assert config.training["mode"] == "frozen-encoder"
    assert config.training["head"] == "linear"  # the default with a frozen encoder
    assert config.training["pca_components"] == 4
    assert len(config.training["linear"]["standardised_coefficients"]) == \
        len(config.feature_names) + 4
    assert config.head_hidden == 2
    assert config.counts["train"]["examples"] == report.counts["train"]["examples"]
    assert "train(events" in config.training["command"]


def test_metrics_compare_both_models(trained_text) -> None:
    out, report = trained_text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["train"]["positives"] > 0
    assert metrics["counts"]["val"]["examples"] > 0
    for block in (metrics["val"], metrics["time_split"]):
        for model in ("bert", "baseline"):
            assert {"roc_auc", "pr_auc", "brier", "n", "positives"} <= set(block[model])
            assert 0 <= block[model]["brier"] <= 1
        assert block["bert"]["n"] == block["baseline"]["n"]
    assert metrics["time_split"]["counts"]["after"]["examples"] > 0
    assert metrics["time_split"]["fits"]["bert_best_epoch"] == 0  # linear: no epochs
    cv = metrics["user_cv"]
    assert cv["folds"] == 5 and 2 <= len(cv["per_fold"]) <= 5
    if "skipped" not in cv:
        assert set(cv["bert"]) == {"pr_auc", "roc_auc", "brier"}
        assert cv["pr_auc_diff_bert_minus_baseline"]["folds_compared"] == len(cv["per_fold"])
        assert "cross-validation by user" in (out / "README.md").read_text()
    card = (out / "README.md").read_text()
    assert "| BERT encoder + head |" in card and "GBDT baseline" in card
    assert LABEL_DEFINITION in card
    baseline = load_baseline(out)
    assert baseline.info["train_examples"] == report.counts["train"]["examples"]
    assert set(report.times) >= {"examples_s", "embed_s", "fit_bert_s", "fit_baseline_s",
                                 "total_s"}


def test_deterministic(trained, encoder: Path, events: list[dict], tmp_path: Path) -> None:
    out, report = trained
    again = train(events, out_dir=tmp_path / "m", name="tiny-intent", version="9.9.9",
                  encoder_dir_or_package=encoder, time_frac=None, **SMALL)
    assert again.metrics["val"] == report.metrics["val"]
    assert (tmp_path / "m" / "pooled.safetensors").read_bytes() == \
        (out / "pooled.safetensors").read_bytes()
    assert "time_split" not in again.metrics


def test_mlp_head(encoder: Path, events: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "mlp"
    report = train(events, out_dir=out, head="mlp", encoder_dir_or_package=encoder, epochs=15,
                   patience=5, **TEXT)
    training = read_config(out).training
    assert training["head"] == "mlp"
    assert training["best_epoch"] == report.best_epoch >= 1
    assert report.metrics["time_split"]["fits"]["bert_best_epoch"] >= 1
    assert read_config(out).head_hidden == SMALL["head_hidden"]
    assert "AdamW" in (out / "README.md").read_text()


def test_linear_head_refuses_finetuning(encoder: Path, events: list[dict],
                                        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frozen encoder"):
        train(events, out_dir=tmp_path / "x", head="linear", finetune=True,
              encoder_dir_or_package=encoder, **TEXT)


def test_refuses_to_overwrite(trained, encoder: Path, events: list[dict]) -> None:
    out, _ = trained
    with pytest.raises(FileExistsError):
        train(events, out_dir=out, encoder_dir_or_package=encoder, **SMALL)


def test_finetune_end_to_end(encoder: Path, events: list[dict], tmp_path: Path) -> None:
    report = train(events, out_dir=tmp_path / "ft", encoder_dir_or_package=encoder,
                   finetune=True, epochs=1, batch_size=32, time_frac=None, **TEXT)
    config = read_config(tmp_path / "ft")
    assert config.encoder_path == "encoder" and config.training["mode"] == "fine-tuned"
    model = load_model(tmp_path / "ft", device="cpu")
    examples = build_examples(events, max_events=50, window_seconds=3600)
    val = [e for e in examples if user_split(e.user_id) == "val"]
    scores = model.score([build_input(e.window, max_chars=model.max_chars) for e in val])
    pr_auc = average_precision_score([e.label for e in val], scores)
    assert pr_auc == pytest.approx(report.metrics["val"]["bert"]["pr_auc"], abs=1e-5)


def test_validation_users_never_reach_the_baseline(encoder: Path, events: list[dict],
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every baseline fit (main, time split, each user fold) sees only its fit users: no val
    user in the main and time-split fits, no user of the scored fold in a fold's fit."""
    import sys

    from worker.dataset.examples import Example
    from worker.dataset.split import user_fold

    train_module = sys.modules["worker.training.train"]  # the package's ``train`` is the function
    calls: list[set[str]] = []
    real = train_module.fit_baseline

    def recording(*args, **kwargs):
        seen = [v for v in (*args, *kwargs.values()) if isinstance(v, list | tuple)]
        calls.append({e.user_id for v in seen for e in v if isinstance(e, Example)})
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "fit_baseline", recording)
    train(events, out_dir=tmp_path / "m", encoder_dir_or_package=encoder, **SMALL)
    examples = build_examples(events, max_events=50, window_seconds=3600)
    train_users = {e.user_id for e in examples if user_split(e.user_id) == "train"}
    assert calls[0] == train_users  # the main fit: all training users, nothing else
    assert calls[1] <= train_users  # the time split: training users before the cut
    fold_users = {}
    for e in examples:
        fold_users.setdefault(user_fold(e.user_id), set()).add(e.user_id)
    assert len(calls) >= 4  # at least two folds compared
    for users in calls[2:]:
        scored = [k for k, members in fold_users.items() if not members & users]
        assert len(scored) == 1  # one fold left out entirely, the others fitted on
        assert users == set().union(*(m for k, m in fold_users.items() if k != scored[0]))


def test_baseline_ignores_the_validation_labels(trained_text, encoder: Path,
                                               events: list[dict], tmp_path: Path) -> None:
    """The val users' purchases turned into views (their labels all 0): the saved baseline,
    its trees and its time-split fit are the same; stopping on val moved them."""
    out, report = trained_text
    val_users = {e["user_id"] for e in events if user_split(e["user_id"]) == "val"}
    assert any(e["event_type"] == "purchase" for e in events if e["user_id"] in val_users)
    changed = [{**e, "event_type": "view"} if e["user_id"] in val_users
               and e["event_type"] == "purchase" else e for e in events]
    again = train(changed, out_dir=tmp_path / "m", name="tiny-intent", version="9.9.9",
                  encoder_dir_or_package=encoder, epochs=15, patience=5, cv_folds=None,
                  **TEXT)
    assert again.metrics["val"]["bert"]["positives"] == 0 < \
        report.metrics["val"]["bert"]["positives"]
    assert again.metrics["training"]["baseline"] == report.metrics["training"]["baseline"]
    assert again.metrics["time_split"]["fits"] == report.metrics["time_split"]["fits"]
    windows = [e.window for e in build_examples(events, max_events=50, window_seconds=3600)]
    assert np.array_equal(load_baseline(tmp_path / "m").predict_proba(windows),
                          load_baseline(out).predict_proba(windows))
    # the linear head does not look at val either (equal up to float noise: the extra val
    # examples change how the texts are batched through the encoder)
    from safetensors.numpy import load_file

    head, head_before = load_file(tmp_path / "m" / "head.safetensors"), load_file(
        out / "head.safetensors")
    assert head.keys() == head_before.keys()
    assert all(np.allclose(head[k], head_before[k], rtol=1e-4, atol=1e-6) for k in head)
