"""docker-compose.yml can't be run here (no Docker engine); check what can be checked:
the Compose specification (its JSON schema as pydantic models, ``compose-pydantic``), the
worker's environment names, Redis persistence, Prometheus scraping the worker, and a
Grafana dashboard that only queries metrics the worker exports."""

import json
import re
from pathlib import Path

import pytest
import yaml

from worker.ops.metrics import Metrics
from worker.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.gpu.yml"]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def compose() -> dict:
    return load("docker-compose.yml")


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_files_follow_the_compose_specification(name: str) -> None:
    from compose_pydantic import ComposeSpecification

    ComposeSpecification.model_validate(load(name))


def test_the_specification_check_can_fail() -> None:
    from compose_pydantic import ComposeSpecification
    from pydantic import ValidationError

    broken = compose()
    broken["services"]["worker"]["enviroment"] = broken["services"]["worker"].pop("environment")
    with pytest.raises(ValidationError, match="enviroment"):
        ComposeSpecification.model_validate(broken)


def test_services_have_an_image_or_a_build():
    services = compose()["services"]
    assert {"kafka", "redis", "worker", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_worker_environment_names_are_real_settings(name: str):
    known = {env_name(f) for f in Settings.model_fields}
    env = load(name)["services"]["worker"]["environment"]
    unknown = sorted(set(env) - known)
    assert not unknown, f"not settings: {unknown}"


def test_redis_persists_with_aof():
    assert "--appendonly" in compose()["services"]["redis"]["command"]


def test_kafka_is_the_official_image_in_kraft_mode():
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_prometheus_scrapes_the_worker_port():
    services = compose()["services"]
    port = services["worker"]["environment"]["INTENT_WEB_PORT"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert f"worker:{port}" in job["static_configs"][0]["targets"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_prometheus_loads_the_shipped_rule_files():
    """The config names its rule files relative to itself: they must be mounted beside it."""
    prometheus = compose()["services"]["prometheus"]
    (config,) = [a.split("=", 1)[1] for a in prometheus["command"]
                 if a.startswith("--config.file=")]
    container_dir = str(Path(config).parent)
    mounts = {}
    for volume in prometheus["volumes"]:
        host, container, *mode = volume.split(":")
        mounts[container] = (host, mode)
    assert mounts.get(container_dir) == ("./deploy/prometheus", ["ro"]), prometheus["volumes"]
    rule_files = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())[
        "rule_files"]
    assert rule_files
    for name in rule_files:
        assert not Path(name).is_absolute(), name
        assert (ROOT / "deploy/prometheus" / name).is_file(), name


def test_the_dashboard_queries_only_exported_metrics():
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    exported = {family.name + suffix for family in Metrics().registry.collect()
                for suffix in suffixes[family.type]}
    dash = json.loads((ROOT / "deploy/grafana/dashboards/intent-worker.json").read_text())
    names = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\bintent_[a-z_]+", target["expr"]))
    assert names and not names - exported, sorted(names - exported)
    provisioning = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/intent-worker.yml").read_text())
    assert provisioning["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
