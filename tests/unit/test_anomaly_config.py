"""DetectorConfig: documented defaults, validation naming the bad threshold."""

from __future__ import annotations

import math

import pytest

from worker.anomaly import DetectorConfig
from worker.errors import ConfigError


def test_defaults_are_valid() -> None:
    cfg = DetectorConfig()
    assert cfg.validate() is cfg
    assert cfg.velocity_min_purchases == 5 and cfg.velocity_span_s == 600.0
    assert cfg.bot_events == 12 and cfg.bot_max_median_gap_s == 0.5 and cfg.bot_max_cv == 0.05
    assert cfg.price_max_robust_z == 6.0 and cfg.price_min_samples == 20
    assert cfg.cooldown_s == 1800.0
    assert set(cfg.thresholds()) == set(DetectorConfig.names())


@pytest.mark.parametrize(("name", "value"), [
    ("velocity_min_purchases", 1), ("velocity_min_purchases", 5.0),
    ("velocity_min_spend", 0.0), ("velocity_span_s", -1.0), ("velocity_span_s", math.inf),
    ("bot_events", 2), ("bot_max_median_gap_s", -0.1), ("bot_max_cv", math.nan),
    ("bot_max_mean_gap_s", -1), ("ooc_max_score", 1.5), ("ooc_max_score", -0.1),
    ("ooc_min_prior_events", -1), ("price_max_robust_z", 0), ("price_min_samples", 2),
    ("price_min_mad_log", 0.0), ("price_stats_capacity", 10), ("cooldown_s", -5),
    ("cooldown_s", True),
])
def test_a_bad_threshold_is_named(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=name):
        DetectorConfig().replace(**{name: value}).validate()


def test_from_mapping_converts_and_validates() -> None:
    cfg = DetectorConfig.from_mapping({"velocity_min_purchases": "8", "bot_max_cv": "0.02"})
    assert cfg.velocity_min_purchases == 8 and cfg.bot_max_cv == 0.02
    with pytest.raises(ConfigError, match="velocity_min_purchases"):
        DetectorConfig.from_mapping({"velocity_min_purchases": "eight"})
    with pytest.raises(ConfigError, match="bogus"):
        DetectorConfig.from_mapping({"bogus": "1"})
    with pytest.raises(ConfigError, match="price_min_samples"):
        DetectorConfig.from_mapping({"price_min_samples": "1"})
    with pytest.raises(ConfigError, match="bogus"):
        DetectorConfig().replace(bogus=1)


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        DetectorConfig().bot_events = 3  # type: ignore[misc]


def test_settings_defaults_are_the_detectors_defaults() -> None:
    from worker.settings import load_settings

    assert DetectorConfig.from_settings(load_settings()) == DetectorConfig()


PROBES = (-1, 0, 1, 2, 3, 20, 200, 201, -0.5, 0.5, 1.5, float("nan"), float("inf"))


@pytest.mark.parametrize("name", DetectorConfig.names())
def test_settings_accept_exactly_the_thresholds_the_detectors_accept(name: str) -> None:
    # the settings check the bounds at load time (naming the variable); the detectors check
    # them again: both must draw the line in the same place
    from worker.settings import load_settings

    is_int = type(getattr(DetectorConfig(), name)) is int
    for value in PROBES:
        if is_int and type(value) is not int:
            continue
        try:
            DetectorConfig().replace(**{name: value}).validate()
            detectors_ok = True
        except ConfigError:
            detectors_ok = False
        try:
            settings = load_settings(**{"anomaly_" + name: value})
            settings_ok = True
        except ConfigError:
            settings_ok = False
        assert settings_ok == detectors_ok, (name, value)
        if settings_ok:
            assert getattr(DetectorConfig.from_settings(settings), name) == value


def test_from_settings_names_the_variable() -> None:
    from types import SimpleNamespace

    values = {"anomaly_" + n: v for n, v in DetectorConfig().thresholds().items()}
    values["anomaly_bot_max_cv"] = float("nan")
    with pytest.raises(ConfigError, match="INTENT_ANOMALY_BOT_MAX_CV must be a finite number"):
        DetectorConfig.from_settings(SimpleNamespace(**values))  # type: ignore[arg-type]
