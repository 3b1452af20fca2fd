"""Detector thresholds: one frozen object, checked once at start-up.

The defaults suit the REES46 clickstream with injected anomalies (``intent-worker evaluate
--anomaly-labels`` measures them); the reasons are given per field. Times are event time
(the ``ts`` of the events), never the wall clock. The worker's settings expose every
threshold as ``INTENT_ANOMALY_<NAME>`` with the same defaults
(:meth:`DetectorConfig.from_settings`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.errors import ConfigError
from worker.settings import Settings, env_name

__all__ = ["KINDS", "SEVERITIES", "DetectorConfig"]

KINDS = ("purchase_velocity", "bot_cadence", "out_of_character_purchase", "price_outlier")
SEVERITIES = ("low", "medium", "high")


def _default(name: str) -> Any:
    """The default of ``INTENT_ANOMALY_<NAME>``: the settings hold the one copy of each."""
    return Settings.model_fields["anomaly_" + name].default


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Thresholds of the four detectors and of the per (user, kind) cooldown.

    Call :meth:`validate` once (start-up); detectors assume a valid config.
    """

    # -- purchase_velocity: >= min purchases, or >= min spend, within span (event time).
    #    REES46 dev: at most 3 purchases and 2,260 spend by one user in any 10 minutes.
    velocity_min_purchases: int = _default("velocity_min_purchases")
    # spend in price units of the shop; REES46 items reach ~2,600
    velocity_min_spend: float = _default("velocity_min_spend")
    velocity_span_s: float = _default("velocity_span_s")

    # -- bot_cadence: over the last ``bot_events`` events of the window, the gaps are too
    #    short (median < bot_max_median_gap_s) or too regular (coefficient of variation
    #    < bot_max_cv while the mean gap is < bot_max_mean_gap_s). REES46 dev users: the
    #    smallest median over 12 events is 2 s, the smallest CV 0.18.
    bot_events: int = _default("bot_events")
    bot_max_median_gap_s: float = _default("bot_max_median_gap_s")
    bot_max_cv: float = _default("bot_max_cv")
    bot_max_mean_gap_s: float = _default("bot_max_mean_gap_s")

    # -- out_of_character_purchase: a purchase of a product with no earlier event in the
    #    window, at least ``ooc_min_prior_events`` (and never fewer than 1) events into the
    #    window, and an intent score of the window just before it below ``ooc_max_score``.
    #    The default is about the 95th percentile of the shipped model's scores over the
    #    REES46 dev example windows: windows at or above it are followed by a purchase several
    #    times more often than the base rate, so there the model expected the purchase; below
    #    it, the purchase is out of character. It depends on the model: re-pick it for another
    #    one (`intent-worker evaluate --anomaly-labels` shows the effect).
    ooc_max_score: float = _default("ooc_max_score")
    ooc_min_prior_events: int = _default("ooc_min_prior_events")

    # -- price_outlier: robust z of ln(price) against the category's running median and MAD
    #    of ln(price) (last ``price_stats_capacity`` prices seen in views, carts and
    #    purchases). Log prices, because prices within a category spread multiplicatively
    #    (raw prices give many more large z on clean data). The default z stays above the
    #    largest clean REES46 dev purchase. The MAD floor 0.15 means a price must be at least
    #    exp(6 * 1.4826 * 0.15) = 3.8x off the median to fire, so that a category sampled
    #    mostly from one product does not flag its ordinary neighbours.
    price_max_robust_z: float = _default("price_max_robust_z")
    price_min_samples: int = _default("price_min_samples")
    price_min_mad_log: float = _default("price_min_mad_log")
    price_stats_capacity: int = _default("price_stats_capacity")

    # -- cooldown: per (user, kind), at most one alert per this much event time.
    cooldown_s: float = _default("cooldown_s")

    def validate(self) -> DetectorConfig:
        """Return self, or raise :class:`ConfigError` naming the first bad threshold."""
        _int(self, "velocity_min_purchases", 2)
        _num(self, "velocity_min_spend", 0.0, strict=True)
        _num(self, "velocity_span_s", 0.0, strict=True)
        _int(self, "bot_events", 3)
        _num(self, "bot_max_median_gap_s", 0.0)
        _num(self, "bot_max_cv", 0.0)
        _num(self, "bot_max_mean_gap_s", 0.0)
        _num(self, "ooc_max_score", 0.0, high=1.0)
        _int(self, "ooc_min_prior_events", 0)
        _num(self, "price_max_robust_z", 0.0, strict=True)
        _int(self, "price_min_samples", 3)
        _num(self, "price_min_mad_log", 0.0, strict=True)
        _int(self, "price_stats_capacity", 3)
        if self.price_stats_capacity < self.price_min_samples:
            raise ConfigError(
                f"anomaly threshold price_stats_capacity ({self.price_stats_capacity}) must be "
                f">= anomaly threshold price_min_samples ({self.price_min_samples})")
        _num(self, "cooldown_s", 0.0)
        return self

    def replace(self, **changes: Any) -> DetectorConfig:
        """A copy with ``changes`` applied (not validated)."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ConfigError(f"unknown anomaly threshold(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_settings(cls, settings: Settings) -> DetectorConfig:
        """The thresholds of ``INTENT_ANOMALY_*``, validated; an error names the variable."""
        config = cls(**{name: getattr(settings, "anomaly_" + name) for name in cls.names()})
        try:
            return config.validate()
        except ConfigError as exc:
            # "anomaly threshold <name> must ..." -> name the environment variable
            raise ConfigError(re.sub(r"anomaly threshold (\w+)",
                                     lambda m: env_name("anomaly_" + m.group(1)),
                                     str(exc))) from None

    @classmethod
    def from_mapping(cls, values: Mapping[str, str | int | float]) -> DetectorConfig:
        """Defaults overridden by ``values`` (strings are converted), then validated.

        For flags and environment variables such as ``velocity_min_purchases=8``.
        """
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in types:
                raise ConfigError(f"unknown anomaly threshold {name!r}; known: "
                                  f"{', '.join(types)}")
            want = int if types[name] in (int, "int") else float
            try:
                changes[name] = want(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"anomaly threshold {name}={raw!r} is not "
                                  f"{'an integer' if want is int else 'a number'}") from None
        return cls(**changes).validate()

    def thresholds(self) -> dict[str, float]:
        """Every threshold by name (for reports)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _int(cfg: DetectorConfig, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if type(value) is not int or value < low:
        raise ConfigError(f"anomaly threshold {name} must be an integer >= {low}, got {value!r}")


def _num(cfg: DetectorConfig, name: str, low: float, *, strict: bool = False,
         high: float | None = None) -> None:
    value = getattr(cfg, name)
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and (value > low if strict else value >= low)
          and (high is None or value <= high))
    if not ok:
        bound = f"> {low}" if strict else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        raise ConfigError(f"anomaly threshold {name} must be a finite number {bound}, "
                          f"got {value!r}")
