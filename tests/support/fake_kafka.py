"""In-memory stand-ins for aiokafka's consumer, with Kafka's offset and time-index
semantics, for tests of code that reads topic ranges."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndTimestamp

__all__ = ["FakeConsumer", "consumer_factory", "partitioned_data"]


class FakeConsumer:
    """In-memory partitions of (key, value, timestamp). ``index`` is how offsets_for_times
    answers: "kafka" (first record stamped >= target, by record timestamp), or a dict
    partition -> OffsetAndTimestamp | None to play a broker with a wrong index."""

    instances: list[FakeConsumer] = []

    def __init__(self, data: dict[int, list[tuple[bytes, bytes, int]]], *, index="kafka",
                 fetch_size: int = 2, list_end_lag: int = 0, **kwargs) -> None:
        self.data = data
        self.index = index
        self.fetch_size = fetch_size
        self.list_end_lag = list_end_lag  # ListOffsets answers this much too low (like Tansu)
        self.kwargs = kwargs
        self.assigned: list[TopicPartition] = []
        self.pos: dict[TopicPartition, int] = {}
        self.hw: dict[TopicPartition, int] = {}
        self.paused_tps: set[TopicPartition] = set()
        self.resumed: list[int] = []
        self.fetched: list[tuple[int, int]] = []  # (partition, offset) of every record handed out
        self.seeks: list[tuple[int, int]] = []
        self.stopped = False
        FakeConsumer.instances.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def partitions_for_topic(self, topic: str):
        return set(self.data) if topic == "t" else None

    async def topics(self):
        return {"t"}

    async def beginning_offsets(self, tps):
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps):
        return {tp: max(0, len(self.data[tp.partition]) - self.list_end_lag) for tp in tps}

    async def offsets_for_times(self, stamps):
        out = {}
        for tp, target in stamps.items():
            if self.index != "kafka":
                out[tp] = self.index.get(tp.partition)
                continue
            rows = self.data[tp.partition]
            out[tp] = next((OffsetAndTimestamp(o, ts) for o, (_, _, ts) in enumerate(rows)
                            if ts >= target), None)
        return out

    def assign(self, tps) -> None:
        self.assigned = list(tps)

    def seek(self, tp, offset) -> None:
        self.pos[tp] = offset
        self.seeks.append((tp.partition, offset))

    def pause(self, *tps) -> None:
        self.paused_tps.update(tps)

    def resume(self, *tps) -> None:
        self.paused_tps.difference_update(tps)
        self.resumed.extend(tp.partition for tp in tps)

    async def position(self, tp):
        return self.pos[tp]

    def highwater(self, tp):
        return self.hw.get(tp)

    def last_stable_offset(self, tp):
        return self.hw.get(tp)

    async def getmany(self, *tps, timeout_ms=0):
        await asyncio.sleep(0)
        out = {}
        for tp in tps:
            assert tp in self.assigned and tp not in self.paused_tps
            self.hw[tp] = len(self.data[tp.partition])
            start = self.pos[tp]
            rows = self.data[tp.partition][start:start + self.fetch_size]
            if rows:
                out[tp] = [SimpleNamespace(key=k, value=v, timestamp=ts, partition=tp.partition,
                                           offset=start + i)
                           for i, (k, v, ts) in enumerate(rows)]
                self.fetched.extend((tp.partition, start + i) for i in range(len(rows)))
                self.pos[tp] = start + len(rows)
        return out


def partitioned_data(n_per_partition: int = 6,
          partitions: int = 2) -> dict[int, list[tuple[bytes, bytes, int]]]:
    # partition p, offset o: timestamp 1000 * (o * partitions + p)
    return {p: [(f"k{p}".encode(), f"v{p}-{o}".encode(), 1000 * (o * partitions + p))
                for o in range(n_per_partition)] for p in range(partitions)}


def consumer_factory(data, **kw):
    def make(**kwargs):
        return FakeConsumer(data, **kw, **kwargs)
    return make
