"""docker-compose.yml can't be run here (no Docker engine); check what can be checked."""

from pathlib import Path

import yaml

from worker.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_have_an_image_or_a_build():
    services = compose()["services"]
    assert {"kafka", "redis", "worker"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name


def test_worker_environment_names_are_real_settings():
    known = {env_name(f) for f in Settings.model_fields}
    env = compose()["services"]["worker"]["environment"]
    unknown = sorted(set(env) - known)
    assert not unknown, f"not settings: {unknown}"


def test_redis_persists_with_aof():
    assert "--appendonly" in compose()["services"]["redis"]["command"]
