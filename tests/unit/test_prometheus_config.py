"""The shipped scrape config passes ``promtool check config`` (which also checks the rule files
it names), and ``start_prometheus`` says what is wrong when Prometheus cannot start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.prometheus import promtool
from worker.errors import ServiceUnavailable
from worker.ops.stack import start_prometheus

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def test_promtool_accepts_the_shipped_config_and_its_rule_files() -> None:
    result = promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = yaml.safe_load(CONFIG.read_text())["rule_files"]
    assert rule_files, "the scrape config names no rule file"
    for name in rule_files:
        assert f"Checking {CONFIG.parent / name}" in result.stdout, result.stdout


def test_promtool_check_config_fails_on_a_broken_rule_file(tmp_path: Path) -> None:
    """The check above can fail: the same config, its rule file with an expression that does
    not parse."""
    shutil.copy(CONFIG, tmp_path / "prometheus.yml")
    config = yaml.safe_load(CONFIG.read_text())
    for name in config["rule_files"]:
        (tmp_path / name).write_text(
            "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n"
            "        expr: sum by (model (intent_score_psi)\n")
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode != 0
    assert '"Broken": could not parse expression' in result.stderr, result.stdout + result.stderr


def test_start_prometheus_reports_an_exit_with_the_log(tmp_path: Path) -> None:
    assert shutil.which("prometheus"), "prometheus not found on PATH: run ./bootstrap"
    bad = tmp_path / "bad.yml"
    bad.write_text("global:\n  scrape_interval: soon\n")
    with pytest.raises(ServiceUnavailable, match=r"(?s)exited with code \d+.*not a valid duration"):
        start_prometheus(bad, workdir=tmp_path)
