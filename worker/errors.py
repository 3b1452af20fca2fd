"""One root error type; every error the product raises on purpose derives from it.

Each carries a flag that tells callers how to handle it instead of matching
long lists of types (the aiokafka way): ``retriable`` errors may succeed if
tried again (a broker or Redis that is not up yet), the others will not.
"""


class IntentError(Exception):
    """Root of every error raised on purpose by intent-worker."""

    retriable: bool = False


class ConfigError(IntentError):
    """A setting, flag or file is wrong; the message says what to fix."""


class BadEvent(IntentError):
    """An input message cannot be accepted; ``reason`` is a stable dead-letter code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ModelError(IntentError):
    """A model directory is missing, incomplete or inconsistent."""


class StoreError(IntentError):
    """The window store (Redis) failed."""

    retriable = True


class ServiceUnavailable(IntentError):
    """A service (broker, Redis) could not be reached in time."""

    retriable = True
