from click.testing import CliRunner

from worker.cli import main


def test_bad_setting_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("INTENT_BATCH_MAX", "lots")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code != 0
    assert "INTENT_BATCH_MAX='lots'" in result.output
    assert "Traceback" not in result.output


def test_publish_needs_an_existing_file_and_a_format(tmp_path):
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "missing.jsonl"), "--format", "jsonl"])
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
