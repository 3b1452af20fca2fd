"""Create the worker's topics, retrying with backoff while the broker comes up."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from worker.errors import ServiceUnavailable

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: list[str], names: Iterable[str], *, partitions: int,
                        timeout_s: float = 60.0, **client_options: object) -> None:
    """Create missing topics; existing ones are left as they are.

    Retries with exponential backoff (0.2 s doubling to 5 s, the last wait cut to end on
    the deadline) until ``timeout_s`` (monotonic) has passed, then raises
    :class:`ServiceUnavailable` naming the bootstrap servers.
    """
    wanted = sorted(set(names))
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    last: Exception | None = None
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_options)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [n for n in wanted if n not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing]
                    )
                except TopicAlreadyExistsError:
                    pass
                log.info("created topics %s", ", ".join(missing))
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        remaining = deadline - time.monotonic()
        if remaining <= 0:  # give up only once the whole timeout has passed
            raise ServiceUnavailable(
                f"Kafka at {','.join(bootstrap)} not reachable after {timeout_s:.0f}s ({last!r}); "
                "check INTENT_KAFKA_BOOTSTRAP"
            )
        wait = min(delay, remaining)  # the last try lands on the deadline
        log.warning("Kafka at %s not reachable yet (%r); retrying in %.1fs",
                    ",".join(bootstrap), last, wait)
        await asyncio.sleep(wait)
        delay = min(delay * 2, 5.0)
