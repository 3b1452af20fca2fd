"""How settings reach the Faust app and the model runtime (no broker needed)."""

from __future__ import annotations

import pytest

from worker.app import create_app
from worker.scoring.pipeline import Pipeline
from worker.scoring.scorer import NoopScorer
from worker.settings import load_settings
from worker.windows import MemoryWindowStore


def app_for(**overrides):
    settings = load_settings(**overrides)
    pipeline = Pipeline(settings, store=MemoryWindowStore.from_settings(settings), scorer=NoopScorer())
    return create_app(settings, pipeline=pipeline)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_processing_guarantee_reaches_faust(guarantee: str) -> None:
    assert app_for(processing_guarantee=guarantee).conf.processing_guarantee.value == guarantee


def test_security_and_session_settings_reach_faust() -> None:
    app = app_for(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                  kafka_sasl_password="p", kafka_session_timeout_s=12)
    assert app.conf.broker_credentials.username == "u"
    assert app.conf.broker_session_timeout == 12


def test_model_threads() -> None:
    assert load_settings(torch_threads=3).model_threads() == 3
    assert load_settings().model_threads() is None  # torch's default
