"""Create the worker's topics, retrying with backoff while the broker comes up."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from worker.backoff import retry
from worker.errors import ServiceUnavailable

log = logging.getLogger(__name__)
_UNREACHABLE = (KafkaConnectionError, KafkaError, OSError)


async def ensure_topics(bootstrap: list[str], names: Iterable[str], *, partitions: int,
                        timeout_s: float = 60.0, **client_options: object) -> None:
    """Create missing topics; existing ones are left as they are.

    Retries with backoff (0.2 s doubling to 5 s) for the whole ``timeout_s``, then raises
    :class:`ServiceUnavailable` naming the bootstrap servers.
    """
    wanted = sorted(set(names))
    servers = ",".join(bootstrap)

    async def create_missing() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [n for n in wanted if n not in existing]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile
                    await admin.create_topics([NewTopic(n, num_partitions=partitions,
                                                        replication_factor=1) for n in missing])
                log.info("created topics %s", ", ".join(missing))
        finally:
            await admin.close()

    def retrying(exc: BaseException, pause_s: float) -> None:
        log.warning("Kafka at %s not reachable yet (%r); retrying in %.1fs", servers, exc, pause_s)

    try:
        await retry(create_missing, when=lambda exc: isinstance(exc, _UNREACHABLE), first_s=0.2,
                    max_s=5.0, timeout_s=timeout_s, on_retry=retrying)
    except _UNREACHABLE as exc:
        raise ServiceUnavailable(
            f"Kafka at {servers} not reachable after {timeout_s:.0f}s ({exc!r}); "
            "check INTENT_KAFKA_BOOTSTRAP"
        ) from None
