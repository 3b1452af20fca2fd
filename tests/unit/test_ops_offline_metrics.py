"""The serving model's offline figures and the count of Redis state losses, as exported."""

from __future__ import annotations

import math

from worker.ops.metrics import Metrics


def lines(metrics: Metrics, name: str) -> list[str]:
    return [ln for ln in metrics.render().decode().splitlines() if ln.startswith(name)]


def test_offline_figures_carry_model_and_version() -> None:
    metrics = Metrics()
    metrics.set_offline("intent-minilm", "2.0.0", {"pr_auc": 0.147, "roc_auc": 0.703})
    assert lines(metrics, "intent_model_offline_pr_auc") == [
        'intent_model_offline_pr_auc{model="intent-minilm",version="2.0.0"} 0.147']
    assert lines(metrics, "intent_model_offline_roc_auc") == [
        'intent_model_offline_roc_auc{model="intent-minilm",version="2.0.0"} 0.703']


def test_a_swap_replaces_the_figures_and_drops_those_the_new_model_lacks() -> None:
    metrics = Metrics()
    metrics.set_offline("m", "1", {"pr_auc": 0.1, "roc_auc": 0.6})
    metrics.set_offline("m", "2", {"pr_auc": 0.2})
    assert lines(metrics, "intent_model_offline_pr_auc") == [
        'intent_model_offline_pr_auc{model="m",version="2"} 0.2']
    assert lines(metrics, "intent_model_offline_roc_auc") == []
    metrics.set_offline("noop", "0", {})
    assert lines(metrics, "intent_model_offline_pr_auc") == []


def test_non_finite_figures_are_not_exported() -> None:
    metrics = Metrics()
    metrics.set_offline("m", "1", {"pr_auc": math.nan, "roc_auc": math.inf})
    assert lines(metrics, "intent_model_offline_") == []


def test_no_figures_before_a_model_is_shown() -> None:
    assert lines(Metrics(), "intent_model_offline_") == []


def test_redis_state_losses_are_a_counter_from_zero() -> None:
    metrics = Metrics()
    assert lines(metrics, "intent_redis_state_lost_total") == ["intent_redis_state_lost_total 0.0"]
    metrics.redis_state_lost.inc()
    assert lines(metrics, "intent_redis_state_lost_total") == ["intent_redis_state_lost_total 1.0"]
