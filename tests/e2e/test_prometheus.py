"""The shipped scrape config, alert rules and Grafana dashboard against a real Prometheus.

Real Tansu, real redis-server, the worker as a process with the shipped model, and Debian's
``prometheus`` started with ``deploy/prometheus/prometheus.yml`` (its target pointed at the
worker, scrape and evaluation every second, its rule files loaded). The worker is fed waves of
synthetic clicks that make every series the dashboard shows: dead letters, a purchase burst and
a bot (alerts), and event time moving well past the label horizon, so that outcomes of both
labels resolve (live quality) while scores wait (drift). Then every query of every panel of
``deploy/grafana/dashboards/intent-worker.json`` goes through ``/api/v1/query`` and must return
data at some point of the run, and so must the join of the live quality rule (live figures
against the serving model's offline ones, whose labels must match) and the worker's batch
signals the rules read; no alert may be pending or firing at any evaluation of the run.

The tests run Debian's Prometheus 2.42 (``./bootstrap``); docker-compose.yml runs v3.5.0.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest
import yaml

from tests.e2e.helpers import (
    bad_messages,
    make_events,
    produce,
    wait_ready,
    worker_env,
    worker_process,
)
from worker.dataset.examples import DEFAULT_HORIZON_S
from worker.ops.stack import start_prometheus

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "intent-worker.json"
JOB = "intent-worker"
SCRAPE_S = 1
MAX_BYTES = 4096
T0 = 1_700_000_000_000
WAVES = 6
# Event time advances half a horizon per wave, so from the third wave on the watermarks pass
# the horizon of the first waves' scores (negatives) while purchases resolve positives.
WAVE_GAP_MS = DEFAULT_HORIZON_S * 1000 // 2
# Grafana's built-in variables at a 1 s scrape: $__rate_interval is
# max($__interval + scrape interval, 4 * scrape interval); $__range is the dashboard's
# default time range (now-1h).
GRAFANA_BUILTINS = {"__interval": "1s", "__interval_ms": "1000", "__rate_interval": "4s",
                    "__range": "1h", "__range_s": "3600", "__range_ms": "3600000"}


def scrape_config(worker_port: int, root: Path) -> dict:
    """The shipped config, its ``intent-worker`` job pointed at the worker, scrape and rule
    evaluation every second, its rule files copied into ``root`` with every group evaluated
    every second too (a group's own interval would delay its first evaluation), and the probe
    rule beside them; everything else as shipped."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = f"{SCRAPE_S}s"
    config["global"]["evaluation_interval"] = f"{SCRAPE_S}s"
    rule_files = []
    for name in config["rule_files"]:
        rules = yaml.safe_load((PROMETHEUS_DIR / name).read_text())
        for group in rules["groups"]:
            group.pop("interval", None)
        (root / name).write_text(yaml.safe_dump(rules, sort_keys=False))
        rule_files.append(str(root / name))
    (root / "probe.yml").write_text(yaml.safe_dump(PROBE_RULES))
    config["rule_files"] = [*rule_files, str(root / "probe.yml")]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    for static in job["static_configs"]:
        static["targets"] = [f"127.0.0.1:{worker_port}"]
    return config


# A rule of the test's own, pending for the whole run: what the ALERTS query must find.
PROBE_ALERT = "TestProbeAlwaysPending"
PROBE_GROUP = "test-probe"
PROBE_RULES = {"groups": [{"name": PROBE_GROUP, "rules": [
    {"alert": PROBE_ALERT, "expr": "vector(1)", "for": "1d"}]}]}


def panels(items: list[dict]):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def promql(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with Grafana's variables (``$x``, ``${x}``, ``${x:fmt}``, ``[[x]]``) replaced."""
    def value(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in variables:
            return variables[name]
        raise AssertionError(f"unknown Grafana variable ${name} in {expr!r}")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


# Queries the rules depend on that no panel makes: (what, PromQL).
RULE_QUERIES = [
    ("the live quality rule's join of live and offline figures",
     'intent_live_roc_auc{role="champion"} * ignoring (role) group_left ()'
     " intent_model_offline_roc_auc"),
    ("the age of the batch in flight", "intent_batch_in_flight_seconds"),
    ("the failed deliveries", "intent_delivery_retries_total"),
    ("the valid events of IntentScoresStopped",
     "rate(intent_events_in_total[1m]) - (sum without (reason)"
     " (rate(intent_dead_letters_total[1m])) or rate(intent_events_in_total[1m]) * 0)"),
]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel; a template variable stands for
    every value (``.*``, as "All" does in a regex matcher)."""
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: ".*" for v in (dash.get("templating") or {}).get("list", [])}
    return [(p["title"], promql(t["expr"], variables))
            for p in panels(dash["panels"]) for t in p.get("targets", []) if t.get("expr")]


def test_grafana_variables_are_replaced() -> None:
    variables = {"instance": ".*"}
    assert promql("rate(x{instance=~\"$instance\"}[$__rate_interval])", variables) == (
        "rate(x{instance=~\".*\"}[4s])")
    assert promql("increase(x[${__range}]) / [[__range_s]]", variables) == (
        "increase(x[1h]) / 3600")
    with pytest.raises(AssertionError, match="unknown Grafana variable"):
        promql("x{a=\"$nope\"}", variables)


def test_the_dashboard_has_queries() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15 and all(q for _, q in queries)


def wave(k: int) -> list[tuple[bytes | None, bytes | None]]:
    """Wave ``k``'s messages, keyed by user: 80 clicks of 16 users over 80 s of event time, two
    bad messages, and in wave 1 a purchase burst and a bot."""
    start = T0 + k * WAVE_GAP_MS
    events = make_events(80, users=16, seed=100 + k, start_ms=start)
    if k == 1:
        events += anomalies(start + 100_000)
    messages: list[tuple[bytes | None, bytes | None]] = [
        (e["user_id"].encode(), orjson.dumps(e)) for e in events]
    bad = bad_messages(MAX_BYTES)
    messages += [(key, value) for key, value, _ in (bad[k % len(bad)], bad[(k + 5) % len(bad)])]
    return messages


def anomalies(ts: int) -> list[dict]:
    """Seven purchases 10 s apart (a purchase burst) and 20 views 100 ms apart (a bot)."""
    def click(eid: str, user: str, t: int, etype: str) -> dict:
        return {"event_id": eid, "user_id": user, "event_type": etype, "ts": t,
                "product": {"id": "s1", "title": "Running shoes", "category": "apparel.shoes",
                            "price": 90.0}}
    burst = [click(f"burst-{i}", "burst", ts + i * 10_000, "purchase") for i in range(7)]
    bot = [click(f"bot-{i}", "bot", ts + i * 100, "view") for i in range(20)]
    return burst + bot


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback test URL
        return orjson.loads(resp.read())


def worker_sample(port: int, name: str) -> float:
    """A sample without labels from the worker's /metrics (0 when it is not there yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",  # noqa: S310
                                    timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def query(prom: str, expr: str) -> list[dict]:
    body = get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", (expr, body)
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def has_data(result: list[dict]) -> bool:
    """At least one series with a number (Grafana draws nothing for NaN)."""
    return any(not math.isnan(float(r["value"][1])) for r in result)


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def feed(bootstrap: str, env: dict[str, str], log: Path) -> int:
    """Send the waves, each once the worker consumed the one before and Prometheus scraped it
    (so every rate moves between scrapes); the messages sent."""
    port = int(env["INTENT_WEB_PORT"])
    sent = 0
    for k in range(WAVES):
        messages = wave(k)
        await produce(bootstrap, env["INTENT_TOPIC_EVENTS"], messages)
        sent += len(messages)
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(worker_sample, port, "intent_events_in_total") < sent:
            assert time.monotonic() < deadline, f"wave {k} not consumed in 60 s:\n{tail(log)}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(SCRAPE_S * 1.2)
    return sent


async def until_all_data(prom: str, queries: list[tuple[str, str]],
                         timeout_s: float) -> tuple[list[tuple[str, str]], list[dict]]:
    """Query until every query has had data in some pass and every rule was evaluated, or the
    time is up; the queries that never had data and the rule groups, then. A query counts once
    it had data: ratio and quantile panels go NaN a few minutes after the last batch, so on a
    slow run they need not all have data in the same pass."""
    deadline = time.monotonic() + timeout_s
    missing = list(queries)
    while True:
        missing = [(title, q) for title, q in missing
                   if not has_data(await asyncio.to_thread(query, prom, q))]
        groups = (await asyncio.to_thread(get_json, f"{prom}/api/v1/rules"))["data"]["groups"]
        unevaluated = [r for g in groups for r in g["rules"] if r["health"] == "unknown"]
        if (not missing and not unevaluated) or time.monotonic() > deadline:
            return missing, groups
        await asyncio.sleep(SCRAPE_S)


@pytest.fixture(scope="module")
async def prometheus_run(kafka_bootstrap, redis_url, tmp_path_factory):
    started = time.monotonic()
    root = tmp_path_factory.mktemp("prometheus")
    env = worker_env(kafka_bootstrap, redis_url, INTENT_MAX_EVENT_BYTES=str(MAX_BYTES),
                     INTENT_OUTCOME_LATENESS_S="0",
                     INTENT_TOPIC_OUTCOMES=f"outcomes-{root.name}")
    port = int(env["INTENT_WEB_PORT"])
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(port, root)))
    prometheus = start_prometheus(config, workdir=root)
    prom = f"http://127.0.0.1:{prometheus.port}"
    queries = dashboard_queries() + RULE_QUERIES
    log = root / "worker.log"
    try:
        with worker_process(env, log) as proc:
            status = await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}/ready",
                                             timeout_s=120, proc=proc)
            assert status == 200, f"the worker was not ready ({status}):\n{tail(log)}"
            first_event = time.monotonic()
            sent = await feed(kafka_bootstrap, env, log)
            fed_s = time.monotonic() - first_event
            missing, groups = await until_all_data(prom, queries, timeout_s=60)
            all_data_s = time.monotonic() - first_event
            up = await asyncio.to_thread(query, prom, f'up{{job="{JOB}"}}')
            scrapes = await asyncio.to_thread(query, prom, f'sum_over_time(up{{job="{JOB}"}}[1h])')
            # every alert pending or firing at any evaluation since the worker was ready and
            # scraped (before, up == 0 makes IntentWorkerDown pending, rightly)
            since_s = int(time.monotonic() - first_event) - 2 * SCRAPE_S
            alerts = await asyncio.to_thread(
                query, prom,
                f"group by (alertname, alertstate) (count_over_time(ALERTS[{since_s}s]))")
    finally:
        prometheus.stop()
    print(f"\nprometheus: {len(queries) - len(missing)} of {len(queries)} dashboard and rule "
          f"queries ({len({t for t, _ in queries})} titles) with data {all_data_s:.1f} s after "
          f"the first event ({WAVES} waves, {sent} messages, fed in {fed_s:.1f} s; "
          f"{float(scrapes[0]['value'][1]):.0f} scrapes of the worker); "
          f"{sum(len(g['rules']) for g in groups)} rules evaluated; "
          f"{time.monotonic() - started:.1f} s in all")
    return {"missing": missing, "rules": groups, "up": up, "alerts": alerts, "log": tail(log)}


async def test_every_dashboard_and_rule_query_returns_data(prometheus_run) -> None:
    missing = prometheus_run["missing"]
    assert not missing, "queries without data:\n" + "\n".join(
        f"  {title}: {q}" for title, q in missing)


async def test_prometheus_scrapes_the_worker(prometheus_run) -> None:
    (up,) = prometheus_run["up"]
    assert up["metric"]["instance"].startswith("127.0.0.1:") and up["value"][1] == "1"


async def test_the_shipped_rules_load_and_evaluate_without_error(prometheus_run) -> None:
    shipped = {}
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    for name in config["rule_files"]:
        for group in yaml.safe_load((PROMETHEUS_DIR / name).read_text())["groups"]:
            shipped[group["name"]] = sorted(r.get("alert") or r["record"] for r in group["rules"])
    loaded = {g["name"]: sorted(r["name"] for r in g["rules"]) for g in prometheus_run["rules"]
              if g["name"] != PROBE_GROUP}
    assert shipped and loaded == shipped
    bad = [(r["name"], r["health"], r.get("lastError")) for g in prometheus_run["rules"]
           for r in g["rules"] if r["health"] != "ok"]
    assert not bad, bad


async def test_no_alert_is_pending_or_firing_on_a_healthy_run(prometheus_run) -> None:
    """Once ready, a healthy worker fed a few waves (a few dead letters among them, too few
    outcomes for the quality rules) makes no shipped rule pending, let alone firing; the probe
    rule, always pending, shows that the query sees one that is."""
    alerts = sorted((a["metric"]["alertname"], a["metric"]["alertstate"])
                    for a in prometheus_run["alerts"])
    assert alerts == [(PROBE_ALERT, "pending")], alerts
