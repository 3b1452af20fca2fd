"""The demo's synthetic incidents give one alert each through the real pipeline code."""

from __future__ import annotations

import orjson

from worker.demo import demo_anomalies
from worker.scoring.pipeline import Message, Pipeline
from worker.settings import load_settings
from worker.windows import MemoryWindowStore


class Half:
    name, version, max_chars = "fake", "0", 500

    def score(self, inputs):
        return [0.5] * len(inputs)


async def test_demo_incidents_fire_one_alert_each() -> None:
    base = [(b"u1", orjson.dumps({"event_id": f"b{i}", "user_id": "u1", "event_type": "view",
                                  "ts": "2019-10-01T02:43:37Z"})) for i in range(10)]
    messages = demo_anomalies(base)
    assert len(messages) == len(base) + 39
    settings = load_settings()
    pipe = Pipeline.from_settings(settings, store=MemoryWindowStore.from_settings(settings),
                                  scorer=Half())
    alerts = []
    for i in range(0, len(messages), 16):  # several batches: the cooldown holds across them
        chunk = [Message(k, v, "clickstream", 0, i + j, 0)
                 for j, (k, v) in enumerate(messages[i:i + 16])]
        result = await pipe.process(chunk)
        await pipe.confirm(result)
        alerts += [orjson.loads(o.value) for o in result.alerts]
    assert sorted((a["user_id"], a["kind"]) for a in alerts) == [
        ("demo-bot", "bot_cadence"), ("demo-burst", "purchase_velocity")]
