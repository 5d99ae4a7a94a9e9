"""check-config catches what would fail silently at 3 a.m. (issue 12 point 8).

Rules on metrics that do not exist (they can never fire), all errors in one pass (reference
errors alongside field errors), environment errors naming the variable, `*_file` paths
relative to the config file. Through the real CLI, from a working directory that is not the
config file's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.references import computed_metrics, rule_metric_error
from config.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def check(path: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ONCALL_")}
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean | {"PYTHONPATH": str(ROOT)} | env,
    )


@pytest.mark.parametrize(
    ("metric", "custom", "suggestion"),
    [
        ("latncy_p95_ms", [], "latency_p95_ms"),
        ("scor:*", [], "score:*"),
        ("qualty", [], "quality"),
        ("avilability", [], "availability"),
        ("gpu_utl", ["gpu_util"], "gpu_util"),
        ("xyz*", [], None),  # a pattern that can match nothing, and nothing close
    ],
)
def test_unknown_metrics_are_errors_with_a_suggestion(
    metric: str, custom: list[str], suggestion: str | None
) -> None:
    message = rule_metric_error(metric, custom, computed_metrics())
    assert message is not None
    assert repr(metric) in message
    if suggestion:
        assert f"did you mean {suggestion!r}?" in message
    else:
        assert "did you mean" not in message


@pytest.mark.parametrize(
    ("metric", "custom"),
    [
        ("latency_p95_ms", []),
        ("availability", []),
        ("quality", []),
        ("score:faithfulness", []),  # any score name: scores are the client's names
        ("score:*", []),
        ("sco*", []),
        ("latency_*", []),
        ("*", []),
        ("gpu_util", ["gpu_util"]),
        ("gpu_util", ["gpu_*"]),  # declared by a glob
        ("gpu*", ["gpu_util"]),
        ("queue_*", ["queue_wait_ms"]),
    ],
)
def test_known_names_and_patterns_pass(metric: str, custom: list[str]) -> None:
    assert rule_metric_error(metric, custom, computed_metrics()) is None


def test_computed_metrics_cover_the_layer_tables() -> None:
    from daemon.layers.aggregator import API_METRICS, BEHAVIORAL_METRICS, INFRA_METRICS

    assert set(INFRA_METRICS + API_METRICS + BEHAVIORAL_METRICS) <= set(computed_metrics())


ALL_AT_ONCE = """
listen: {port: 99999}
receivers:
  - {name: sre, type: pagerduty, routing_key: short}
routes:
  - {receiver: nobody}
  - {receiver: sre, fallback: pager}
custom_metrics: [vector_db_latency_ms]
rules:
  - {metric: latncy_p95_ms, detector: static, params: {threshold: 9000, op: above}}
  - {metric: vector_db_latency_ms, detector: sequential}
features:
  bot:
    custom_metrics: ["gpu_*"]
    rules:
      - {metric: "scor:*", detector: cusum}
      - {metric: gpu_util, detector: sequential}
      - {metric: refusal_rate, detector: ewmaa}
  other:
    rules:
      - {metric: gpu_util, detector: sequential}
"""


def test_every_error_in_one_pass(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(ALL_AT_ONCE)
    proc = check(cfg, cwd=tmp_path)
    assert proc.returncode == 1
    lines = [ln.strip() for ln in proc.stderr.splitlines()[1:]]
    expected = [
        "listen.port: Input should be less than or equal to 65535",
        "receivers[0]: routing_key must be the 32-character Events API v2 integration key",
        "features.bot.rules[2]: detector 'ewmaa': unknown detector kind 'ewmaa'",
        "routes[0].receiver: unknown receiver 'nobody'",
        "routes[1].fallback: unknown receiver 'pager'",
        "rules[0].metric: unknown metric 'latncy_p95_ms'; did you mean 'latency_p95_ms'?",
        "features.bot.rules[0].metric: pattern 'scor:*' matches no known metric; did you mean",
        "features.other.rules[0].metric: unknown metric 'gpu_util'",  # declared for bot only
    ]
    for start in expected:
        assert any(ln.startswith(start) for ln in lines), (start, proc.stderr)
    assert len(lines) == len(expected), proc.stderr
    assert proc.stderr.startswith(f"{cfg}: {len(expected)} error(s)")


def test_reference_errors_alone_each_have_their_path(tmp_path: Path) -> None:
    cfg = tmp_path / "refs.yaml"
    cfg.write_text(
        "routes: [{receiver: nobody}]\nrules: [{metric: latncy_p95_ms, detector: "
        "static, params: {threshold: 1, op: above}}]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.errors[0] == "routes[0].receiver: unknown receiver 'nobody'"
    assert err.value.errors[1].startswith("rules[0].metric: unknown metric 'latncy_p95_ms'")
    assert len(err.value.errors) == 2


def test_rule_parameter_errors_name_the_detector_once(tmp_path: Path) -> None:
    """A forgotten required parameter reads as one, not as the constructor's TypeError, and
    the rule's detector is named once."""
    cfg = tmp_path / "params.yaml"
    cfg.write_text(
        "rules:\n"
        "  - {metric: latency_p95_ms, detector: static, params: {op: above}}\n"
        "  - {metric: refusal_rate, detector: ewma, params: {treshold: 3}}\n"
    )
    proc = check(cfg, cwd=tmp_path)
    assert proc.returncode == 1
    lines = [ln.strip() for ln in proc.stderr.splitlines()[1:]]
    assert lines[0] == "rules[0]: detector 'static': missing parameter 'threshold'"
    assert lines[1].startswith("rules[1]: detector 'ewma': unknown parameter 'treshold'; known:")
    assert len(lines) == 2, proc.stderr


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: {port: 9477}\n")
    proc = check(cfg, cwd=tmp_path, LLM_ONCALL_LISTEN__PORT="abc")
    assert proc.returncode == 1
    assert (
        "listen.port (environment variable LLM_ONCALL_LISTEN__PORT): Input should be a valid"
        " integer" in proc.stderr
    )
    # A whole section as malformed JSON: named too, and no traceback.
    proc = check(cfg, cwd=tmp_path, LLM_ONCALL_LISTEN="{port: 1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "listen (environment variable LLM_ONCALL_LISTEN): not valid JSON" in proc.stderr
    # A value from the file is not blamed on the environment.
    cfg.write_text("listen: {port: abc}\n")
    proc = check(cfg, cwd=tmp_path)
    assert "listen.port: Input should be a valid integer" in proc.stderr
    assert "environment variable" not in proc.stderr


def test_a_variable_that_names_no_setting_is_an_error(tmp_path: Path) -> None:
    """Probe finding: `LLM_ONCALL_CORRELATON__WINDOW_S=5` was ignored in silence (the default
    window used) while `LLM_ONCALL_LISTEN__PROT=5` was refused. Both are errors now, in the
    same pass, each naming its variable, with a suggestion when one is close."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: {port: 9477}\n")
    proc = check(
        cfg, cwd=tmp_path, LLM_ONCALL_CORRELATON__WINDOW_S="5", LLM_ONCALL_LISTEN__PROT="5",
        LLM_ONCALL_PORT="9000", LLM_ONCALL_NOTHING_LIKE_IT="1",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[1:] == [
        "  LLM_ONCALL_CORRELATON__WINDOW_S: environment variable names no setting; did you"
        " mean LLM_ONCALL_CORRELATION__WINDOW_S?",
        "  LLM_ONCALL_NOTHING_LIKE_IT: environment variable names no setting",
        "  LLM_ONCALL_PORT: environment variable names no setting; did you mean"
        " LLM_ONCALL_LISTEN__PORT?",
        "  listen.prot (environment variable LLM_ONCALL_LISTEN__PROT): Extra inputs are not"
        " permitted",
    ]
    # The variables the tools read that are not settings (the client's token and URL, the
    # Collector's token in deploy/otel-collector.yaml, the tests' knobs) are left alone.
    proc = check(
        cfg, cwd=tmp_path, LLM_ONCALL_TOKEN="t", LLM_ONCALL_URL="http://127.0.0.1:9477",
        LLM_ONCALL_INGEST_TOKEN="t", LLM_ONCALL_FUZZ_EXAMPLES="5",
        LLM_ONCALL_TEST_ARTIFACTS="/tmp", LLM_ONCALL_CORRELATION__WINDOW_S="5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_file_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    conf_dir = tmp_path / "etc" / "llm-oncall"
    (conf_dir / "secrets").mkdir(parents=True)
    (conf_dir / "secrets" / "token").write_text("from-the-config-folder\n")
    (conf_dir / "secrets" / "pd").write_text("x" * 32 + "\n")
    cfg = conf_dir / "config.yaml"
    cfg.write_text(
        "ingest: {token_file: secrets/token}\n"
        "api: {read_token_file: secrets/token}\n"
        "receivers: [{name: sre, type: pagerduty, routing_key_file: ./secrets/pd}]\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = check(cfg, cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    old = Path.cwd()
    os.chdir(elsewhere)
    try:
        s = load_settings(cfg)
    finally:
        os.chdir(old)
    assert s.ingest.token is not None
    assert s.ingest.token.get_secret_value() == "from-the-config-folder"
    assert s.api.read_token is not None
    assert s.api.read_token.get_secret_value() == "from-the-config-folder"
    # A missing one names the resolved path, so the operator sees where it looked.
    cfg.write_text("ingest: {token_file: secrets/nope}\n")
    proc = check(cfg, cwd=elsewhere)
    assert proc.returncode == 1 and str(conf_dir / "secrets" / "nope") in proc.stderr


@pytest.mark.parametrize(
    ("yaml_text", "error"),
    [
        ("ingest: {token_file: empty}", "ingest: token_file: {dir}/empty is empty"),
        ("ingest: {token_file: blank}", "ingest: token_file: {dir}/blank is empty"),
        ("ingest: {token: '  '}", "ingest: token is empty"),
        ("api: {read_token_file: empty}", "api: read_token_file: {dir}/empty is empty"),
        ("ingest: {token: x, token_file: nope}", "ingest: give token or token_file, not both"),
        (
            "api: {read_token: x, read_token_file: t}",
            "api: give read_token or read_token_file, not both",
        ),
    ],
)
def test_token_secrets_follow_the_receivers_rules(
    tmp_path: Path, yaml_text: str, error: str
) -> None:
    """Probe findings: an empty token file was accepted, and auth then let an empty
    `Authorization: Bearer ` in; a token and a token_file whose file did not exist said ok.
    The tokens now follow the receivers' secrets: one or the other, never empty."""
    (tmp_path / "empty").write_text("")
    (tmp_path / "blank").write_text(" \n\t\n")
    (tmp_path / "t").write_text("t0ken\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text + "\n")
    proc = check(cfg, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[1:] == ["  " + error.format(dir=tmp_path)], proc.stderr
    with pytest.raises(ConfigError):  # `run` and reloads read settings the same way
        load_settings(cfg)


def test_shipped_example_checks_from_any_directory(tmp_path: Path) -> None:
    proc = check(ROOT / "config" / "example.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_the_daemon_refuses_the_same_config_at_start(tmp_path: Path) -> None:
    """`run` reads settings through the same checks, so a rule that could never fire stops
    start-up with the same line, rather than running without the alert."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "rules: [{metric: latncy_p95_ms, detector: static, params: {threshold: 1, "
        "op: above}}]\nstate: {path: " + str(tmp_path / "s.db") + "}\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLM_ONCALL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean | {"PYTHONPATH": str(ROOT), "LLM_ONCALL_LISTEN__PORT": "0"},
        timeout=30,
    )
    assert proc.returncode == 1
    assert "rules[0].metric: unknown metric 'latncy_p95_ms'; did you mean" in proc.stderr


def test_a_config_that_is_not_utf8_is_one_error_naming_the_line(tmp_path: Path) -> None:
    """Probe finding: `/-/reload` answered 500 and check-config ended in a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"listen: {port: 1}\n\xff\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert err.value.errors == [f"{path}:2: not UTF-8 text (byte 18)"]
