"""The shipped alert rules (deploy/prometheus/alerts.yml): promtool accepts them and passes
their unit tests (alerts.test.yml); every alert has test cases that fire and that stay quiet,
a quiet shop among them, and a runbook section; every guard of a rule is needed by some test
case; and the rules read only metrics the worker exports (or the recording rules beside
them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.prometheus import promtool
from worker.ops.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/alerts.yml"
RULE_TESTS = ROOT / "deploy/prometheus/alerts.test.yml"
RUNBOOK = ROOT / "docs/runbook.md"

# Prometheus's own series, not the worker's.
PROMETHEUS_SERIES = {"up"}
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
             "group_right", "offset", "bool", "inf", "nan"}


def all_rules() -> list[dict]:
    """Every rule of alerts.yml: alerting and recording."""
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def rules() -> list[dict]:
    """The alerting rules."""
    return [rule for rule in all_rules() if "alert" in rule]


def records() -> list[dict]:
    """The recording rules."""
    return [rule for rule in all_rules() if "record" in rule]


def alert_names() -> list[str]:
    return sorted({rule["alert"] for rule in rules()})


def rule_tests() -> dict:
    return yaml.safe_load(RULE_TESTS.read_text())


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers left once strings, label
    matchers, label lists, ranges and numbers are gone, less functions and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ",
                  expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        name, call = m.group(1), m.group(2)
        if not call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def template_queries(text: str) -> list[str]:
    """The PromQL of ``{{ with printf "..." ... | query }}`` in an annotation template."""
    return re.findall(r'printf\s+"((?:[^"\\]|\\.)*)"[^}]*\|\s*query', text)


def exported_metrics() -> set[str]:
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    return {family.name + suffix for family in Metrics().registry.collect()
            for suffix in suffixes[family.type]}


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {re.sub(r"[^\w\- ]", "", re.sub(r"[`*_]", "", h.strip().lower())).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(all_rules())} rules found" in result.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_fails_a_broken_rule_test(tmp_path: Path) -> None:
    """The run above can fail: a test that expects the wrong thing is reported."""
    tests = rule_tests()
    group = next(g for g in tests["tests"]
                 if any(c.get("exp_alerts") for c in g["alert_rule_test"]))
    case = next(c for c in group["alert_rule_test"] if c.get("exp_alerts"))
    case["exp_alerts"] = []
    tests["tests"] = [group]
    result = _run_tests(tmp_path, RULES.read_text(), tests)
    assert result.returncode != 0
    assert case["alertname"] in result.stdout + result.stderr


def test_every_alert_has_cases_that_fire_and_that_stay_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in rule_tests()["tests"]:
        for case in group["alert_rule_test"]:
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = set(alert_names())
    assert not names - firing, f"no case where these fire: {sorted(names - firing)}"
    assert not names - quiet, f"no case where these stay quiet: {sorted(names - quiet)}"
    tested = firing | quiet
    assert not tested - names, f"tests of alerts that do not exist: {sorted(tested - names)}"


def test_a_quiet_shop_fires_nothing() -> None:
    """The quiet-shop group checks every alert, and expects none."""
    group = next(g for g in rule_tests()["tests"] if "goes quiet" in g.get("name", ""))
    cases = group["alert_rule_test"]
    assert not [c for c in cases if c.get("exp_alerts")]
    assert {c["alertname"] for c in cases} == set(alert_names())
    series = {s["series"].split("{")[0] for s in group["input_series"]}
    used = set().union(*(metric_names(r["expr"]) for r in all_rules()))
    used -= {r["record"] for r in records()}
    assert not used - series, f"the quiet shop lacks {sorted(used - series)}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_every_rule_has_severity_annotations_and_runbook_entry(rule: dict) -> None:
    assert rule["labels"]["severity"] in {"page", "ticket"}
    notes = rule["annotations"]
    assert notes.get("summary") and notes.get("description")
    anchor = rule["alert"].lower()
    assert notes["runbook_url"] == f"docs/runbook.md#{anchor}"
    assert anchor in anchors(RUNBOOK), f"docs/runbook.md has no section {rule['alert']}"


def test_the_runbook_has_no_section_without_an_alert() -> None:
    text = re.sub(r"```.*?```", "", RUNBOOK.read_text(), flags=re.DOTALL)
    sections = set(re.findall(r"^## (\w+)$", text, flags=re.MULTILINE))
    assert sections == set(alert_names())


def test_the_rules_read_only_metrics_the_worker_exports() -> None:
    used = set()
    for rule in all_rules():
        used |= metric_names(rule["expr"])
        for text in rule.get("annotations", {}).values():
            for query in template_queries(text):
                used |= metric_names(query)
    assert {"intent_consumer_lag", "intent_model_seconds_bucket",
            "intent_batch_in_flight_seconds", "intent_delivery_retries_total", "up"} <= used
    recorded = {r["record"] for r in records()}
    assert recorded <= used, f"recorded and never read: {sorted(recorded - used)}"
    unknown = used - exported_metrics() - PROMETHEUS_SERIES - recorded
    assert not unknown, f"not exported by the worker: {sorted(unknown)}"


def test_metric_names_reads_names_not_functions_labels_or_strings() -> None:
    expr = ('histogram_quantile(0.95, sum without (instance) (rate(a_bucket{le="0.1"}[10m])))'
            ' > 3 * b offset 1d and on (job) c{x=~"d|e"} < ignoring (role) group_left () f')
    assert metric_names(expr) == {"a_bucket", "b", "c", "f"}
    assert metric_names('max(g{model="m"}) by (le)') == {"g"}


# Each guard of a rule, loosened, must make some test case fail: (alert, text of its expr or
# "for", loosened text). Without the guard the rule would fire where a case says it must not.
LOOSENED = [
    ("IntentWorkerDown", 'up{job="intent-worker"}', "up"),
    ("IntentWorkerDown", "for=5m", "for=1m"),
    ("IntentWorkerNotReady", "for=5m", "for=1m"),
    ("IntentConsumerLagGrowing", "> 120", "> 0"),
    ("IntentConsumerLagGrowing", "[10m:1m]) > 0", "[10m:1m]) >= 0"),
    ("IntentScoresStopped", "> 100", "> 0"),
    ("IntentScoresStopped", "sum without (reason) (rate(intent_dead_letters_total[5m]))",
     "rate(intent_events_in_total[5m]) * 0"),
    ("IntentScoresStopped", "intent_batch_in_flight_seconds > 300",
     "intent_batch_in_flight_seconds > 1e9"),
    ("IntentScoresStopped", "intent_ready == 0", "intent_ready == 2"),
    ("IntentBatchStuck", "> 300", "> 0"),
    ("IntentBatchStuck", "for=5m", "for=1m"),
    ("IntentBatchStuck", "increase(intent_batch_retries_total[2m]) > 0",
     "increase(intent_batch_retries_total[2m]) > 1e9"),
    ("IntentBatchStuck", "intent_ready == 0", "intent_ready == 2"),
    ("IntentDeliveryRetries", "[5m]", "[30m]"),
    ("IntentDeliveryRetries", "for=15m", "for=5m"),
    ("IntentDeliveryRetries", "intent_batch_in_flight_seconds > 300",
     "intent_batch_in_flight_seconds > 1e9"),
    ("IntentDeadLettersHigh", ">= 200", ">= 1"),
    ("IntentDeadLettersHigh", "> 0.05", "> 0.005"),
    ("IntentBatchRetries", "for=5m", "for=1m"),
    ("IntentBatchRetries", "[2m]", "[10m]"),
    ("IntentBatchRetries", "intent_ready == 0", "intent_ready == 2"),
    ("IntentModelSlow", "> 0.1", "> 0"),
    ("IntentModelSlow", ">= 10", ">= 1"),
    ("IntentModelSlow", "> 2 *", "> 1.2 *"),
    # per batch instead of per sequence, in the rule and its baseline
    ("IntentModelSlow", "intent_model_sequences_sum", "intent_model_seconds_count"),
    # a baseline that takes the last hour in
    ("IntentModelSlow", " offset 1h", ""),
    ("IntentLiveQualityLow", ">= 1000", ">= 1"),
    ("IntentLiveQualityLow", ">= 50", ">= 1"),
    ("IntentLiveQualityLow", '{role="champion"}', ""),
    ("IntentLiveQualityLow", "- 0.5) / 2", "- 0.5) / 1.1"),
    ("IntentScoreDrift", ">= 500", ">= 1"),
    ("IntentScoreDrift", "> 0.2", "> 0.1"),
    ("IntentScoreDrift", '{role="champion"}', ""),
    ("IntentScoreDrift", "for=30m", "for=5m"),
    ("IntentRedisStateLost", "> 0", ">= 0"),
]


@pytest.mark.parametrize(("alert", "guard", "loose"), LOOSENED,
                         ids=[f"{a}:{g}" for a, g, _ in LOOSENED])
def test_every_guard_is_needed_by_a_test_case(tmp_path: Path, alert: str, guard: str,
                                              loose: str) -> None:
    own = [dict(rule) for rule in rules() if rule["alert"] == alert]
    # and the recording rules it reads, evaluated first as in alerts.yml
    read = set().union(*(metric_names(rule["expr"]) for rule in own))
    baselines = [dict(rule) for rule in records() if rule["record"] in read]
    if guard.startswith("for="):
        for rule in own:
            assert rule["for"] == guard[4:]
            rule["for"] = loose[4:]
    else:
        assert any(guard in rule["expr"] for rule in own + baselines), (alert, guard)
        for rule in own + baselines:
            rule["expr"] = rule["expr"].replace(guard, loose)
    tests = rule_tests()
    tests["tests"] = [dict(g, alert_rule_test=[c for c in g["alert_rule_test"]
                                               if c["alertname"] == alert])
                      for g in tests["tests"]]
    tests["tests"] = [g for g in tests["tests"] if g["alert_rule_test"]]
    groups = [{"name": "loosened", "rules": own}]
    if baselines:  # evaluated first, as in alerts.yml
        groups.insert(0, {"name": "baselines", "interval": "1m", "rules": baselines})
    loosened = yaml.safe_dump({"groups": groups})
    result = _run_tests(tmp_path, loosened, tests)
    assert result.returncode != 0, f"no test case needs {alert}'s {guard!r}"


def _run_tests(tmp_path: Path, rules_text: str, tests: dict) -> subprocess.CompletedProcess[str]:
    (tmp_path / "alerts.yml").write_text(rules_text)
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    return promtool("test", "rules", str(test_file))


def test_the_runbooks_inhibit_rules_name_alerts_that_exist() -> None:
    """The Alertmanager inhibition in the runbook parses and names only shipped alerts, each
    target on the labels its alert carries."""
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", RUNBOOK.read_text(),
                                                    flags=re.DOTALL)]
    (config,) = [b for b in blocks if isinstance(b, dict) and "inhibit_rules" in b]
    by_name = {rule["alert"]: rule for rule in rules()}
    for inhibit in config["inhibit_rules"]:
        named = {}
        for side in ("source_matchers", "target_matchers"):
            (matcher,) = inhibit[side]
            pattern = re.fullmatch(r'alertname(=~?)"([^"]+)"', matcher)
            assert pattern, matcher
            named[side] = set(pattern.group(2).split("|"))
            assert named[side] <= set(by_name), named[side] - set(by_name)
        for target in named["target_matchers"]:
            carried = {"job"} | ({"instance"} if "without (instance" not in
                                 by_name[target]["expr"] else set())
            assert set(inhibit["equal"]) <= carried, (target, inhibit["equal"])
