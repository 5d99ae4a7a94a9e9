"""Settings: defaults, YAML, environment overrides, check-config errors by YAML path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args], capture_output=True, text=True
    )


def test_embedded_defaults() -> None:
    s = load_settings(None)
    assert (s.listen.port, s.correlation.window_s, s.correlation.min_signals) == (9477, 600, 2)
    assert s.correlation.cooldown_s == 900 and s.correlation.change_lookback_s == 7200
    assert s.ingest.max_body_bytes == 8 * 1024 * 1024 and s.ingest.token is None
    assert str(s.state.path) == "llm-oncall-state/state.db"


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: {port: 1111, host: 127.0.0.1}\ncorrelation: {window_s: 300}\n")
    monkeypatch.setenv("LLM_ONCALL_LISTEN__PORT", "2222")
    monkeypatch.setenv("LLM_ONCALL_INGEST__TOKEN", "s3cr3t-value")
    s = load_settings(cfg)
    assert s.listen.port == 2222 and s.listen.host == "127.0.0.1"
    assert s.correlation.window_s == 300
    assert s.ingest.token is not None and s.ingest.token.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(s)


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"ingest: {{token_file: {secret}}}\n")
    s = load_settings(cfg)
    assert s.ingest.token is not None and s.ingest.token.get_secret_value() == "from-file"


BAD = """
listen: {port: 99999}
correlation: {window_s: -1, min_signalz: 2}
features:
  bot:
    rules:
      - {metric: latency_p95_ms, detector: static, params: {threshold: 100, op: sideways}}
      - {metric: refusal_rate, detector: ewmaa}
      - {metric: error_rate, detector: static, params: {treshold: 0.1}}
"""


def test_check_config_names_every_yaml_path(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(BAD)
    proc = run_cli("check-config", str(cfg))
    assert proc.returncode == 1
    err = proc.stderr
    assert "listen.port: Input should be less than or equal to 65535" in err
    assert "correlation.window_s: Input should be greater than 0" in err
    assert "correlation.min_signalz: Extra inputs are not permitted" in err
    assert "features.bot.rules[0]: detector 'static': op must be 'above' or 'below'" in err
    assert "features.bot.rules[1]: detector 'ewmaa': unknown detector kind 'ewmaa'" in err
    assert "features.bot.rules[2]: detector 'static': unknown parameter 'treshold'" in err


def test_check_config_ok_prints_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("features:\n  bot:\n    runbook: {url: 'https://wiki/bot'}\n")
    proc = run_cli("check-config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and "ok — " in proc.stdout and "1 feature(s)" in proc.stdout


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(listy)
    broken = tmp_path / "broken.yaml"
    broken.write_text("listen: {port: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


def test_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
    proc = run_cli("check-config", str(example))
    assert proc.returncode == 0, proc.stderr


def test_receiver_secret_by_indexed_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("receivers:\n  - {name: sre, type: pagerduty}\n")
    monkeypatch.setenv("LLM_ONCALL_RECEIVERS__0__ROUTING_KEY", "R" * 32)
    s = load_settings(cfg)
    assert s.receivers[0].secret() == "R" * 32
    monkeypatch.setenv("LLM_ONCALL_RECEIVERS__4__ROUTING_KEY", "x")
    with pytest.raises(ConfigError, match=r"RECEIVERS__4__ROUTING_KEY: receivers\[4\] is not"):
        load_settings(cfg)


def test_silence_times_in_every_yaml_form(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "silences:\n"
        "  - {matchers: [{name: feature, value: a}], ends_at: 2026-11-17T20:00:00Z}\n"
        "  - {matchers: [{name: feature, value: b}], ends_at: '2026-11-17T21:00:00+01:00'}\n"
        "  - {matchers: [{name: feature, value: c}], ends_at: 1794945600}\n"
    )
    s = load_settings(cfg)
    assert [x.ends_at for x in s.silences] == [1794945600.0, 1794945600.0, 1794945600.0]
    cfg.write_text("silences:\n  - {matchers: [{name: feature, value: a}], ends_at: 'soon'}\n")
    with pytest.raises(ConfigError, match=r"silences\[0\].ends_at: .*RFC 3339"):
        load_settings(cfg)
    cfg.write_text(
        "silences:\n  - {matchers: [{name: feature, value: a}], starts_at: 20, ends_at: 10}\n"
    )
    with pytest.raises(ConfigError, match=r"silences\[0\]: ends_at must be after starts_at"):
        load_settings(cfg)


def test_silence_bounds_and_regex_engine_match_the_runtime(tmp_path: Path) -> None:
    """check-config refuses what the daemon would refuse at start-up (issue 8): times beyond
    what RFC 3339 can write, and regexes RE2 cannot compile (backreferences)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("silences:\n  - {matchers: [{name: feature, value: a}], ends_at: 1.0e+308}\n")
    with pytest.raises(ConfigError, match=r"silences\[0\]: ends_at: must be between 1970"):
        load_settings(cfg)
    cfg.write_text(
        "silences:\n  - {matchers: [{name: f, value: '(a)\\1', is_regex: true}], ends_at: 2e9}\n"
    )
    with pytest.raises(ConfigError, match=r"silences\[0\].matchers\[0\]: value: bad regex.*RE2"):
        load_settings(cfg)


def test_check_config_refuses_the_silences_the_api_refuses(tmp_path: Path) -> None:
    """A config silence goes through the same rules at start-up, so check-config must say so
    first: one that mutes every incident, and a typo in a closed value."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "silences:\n"
        "  - {matchers: [{name: feature, value: '.*', is_regex: true}], ends_at: 2000000000}\n"
    )
    with pytest.raises(ConfigError, match=r"silences\[0\]: matchers: at least one matcher must"):
        load_settings(cfg)
    cfg.write_text(
        "silences:\n  - {matchers: [{name: severity, value: critcal}], ends_at: 2000000000}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"silences\[0\]\.matchers\[0\]: value: severity 'critcal' is not one of critical,"
        r" warning, watch; did you mean 'critical'\?",
    ):
        load_settings(cfg)
    cfg.write_text(
        "silences:\n  - {matchers: [{name: severity, value: critical, is_equal: false}],"
        " ends_at: 2000000000}\n"
    )
    assert load_settings(cfg).silences[0].matchers[0].value == "critical"
