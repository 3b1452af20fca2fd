import pytest
from click.testing import CliRunner

from worker.cli import main


def test_bad_setting_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("INTENT_BATCH_MAX", "lots")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code != 0
    assert "INTENT_BATCH_MAX='lots'" in result.output
    assert "Traceback" not in result.output


def test_publish_needs_an_existing_file_and_a_format(tmp_path):
    missing = str(tmp_path / "missing.jsonl")
    result = CliRunner().invoke(main, ["publish", missing, "--format", "jsonl"])
    assert result.exit_code == 2 and "does not exist" in result.output
    f = tmp_path / "x.csv"
    f.write_text("")
    result = CliRunner().invoke(main, ["publish", str(f), "--format", "parquet"])
    assert result.exit_code == 2 and "parquet" in result.output


def test_a_bad_model_dir_is_refused_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("INTENT_MODEL_PATH", str(tmp_path))
    monkeypatch.setenv("INTENT_REDIS_URL", "redis://127.0.0.1:1/0")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 1
    assert str(tmp_path) in result.output and "Traceback" not in result.output


def test_publish_offers_event_time() -> None:
    result = CliRunner().invoke(main, ["publish", "--help"])
    assert result.exit_code == 0 and "--event-time" in result.output


@pytest.mark.parametrize(
    ("value", "expected"),
    [(b'{"ts": "2019-10-01T02:43:37.000Z"}', 1_569_897_817_000),
     (b'{"ts": "2019-10-01T04:43:37+02:00"}', 1_569_897_817_000),
     (b'{"ts": 1569897817000}', 1_569_897_817_000),
     (b'{"ts": "2019-10-01T02:43:37"}', None),  # no offset: the time is unknown
     (b'{"ts": true}', None), (b'{"ts": -5}', None), (b'{"ts": 1.5}', None), (b'{}', None),
     (b'[1, 2]', None), (b'{"ts": ', None), (b'', None)],
)
def test_event_time_of_a_message(value: bytes, expected: int | None) -> None:
    from worker.kafka.publish import event_time_ms

    assert event_time_ms(value) == expected
