"""docs/settings.md is generated from the Settings class and must equal the generator's output."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic.fields import FieldInfo

from worker.cli import main
from worker.ops.settings_doc import COMMAND, default_text, render, type_text
from worker.settings import Settings, env_name

PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_the_committed_page_is_the_generated_one() -> None:
    assert PAGE.read_text() == render(), f"docs/settings.md is stale: run `{COMMAND}`"


def test_every_setting_has_one_row() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `INTENT_")]
    assert [r.split("`")[1] for r in rows] == [env_name(n) for n in Settings.model_fields]
    assert len(rows) >= 20


def test_the_command_prints_the_page() -> None:
    result = CliRunner().invoke(main, ["settings-doc"])
    assert result.exit_code == 0 and result.output == render()


def test_a_row_gives_type_range_default_and_description() -> None:
    row = next(line for line in render().splitlines() if "`INTENT_BATCH_MAX`" in line)
    assert row == ("| `INTENT_BATCH_MAX` | int >= 1, <= 100000 | `256` | "
                   f"{Settings.model_fields['batch_max'].description} |")
    assert "| one of `auto`, `cpu`, `cuda` | `auto` |" in render()
    assert "| `INTENT_KAFKA_SASL_PASSWORD` | secret | (unset) |" in render()
    assert "| `INTENT_REDIS_CLUSTER` | bool | `false` |" in render()


def test_values_are_shown_as_the_environment_takes_them() -> None:
    assert default_text(None) == "(unset)"
    assert default_text(True) == "`true`"
    assert default_text(0.5) == "`0.5`"


def test_an_undocumented_type_is_refused() -> None:
    with pytest.raises(TypeError, match="no documented form"):
        type_text(FieldInfo(annotation=dict[str, int]))
