"""The CLI's errors are one line and exit 1 (probe findings: a bad --url or a token with a
line break ended in a Python traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run_cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LLM_ONCALL_TOKEN"}
    if token is not None:
        env["LLM_ONCALL_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "token", "says"),
    [
        ("notaurl", None, "is not an http(s) URL"),
        ("http://h/x y", None, "is not an http(s) URL"),
        ("http://127.0.0.1:9", "a\nb", "line break or a control character"),
    ],
)
def test_bad_url_or_token_is_one_line_and_exit_1(url: str, token: str | None, says: str) -> None:
    done = run_cli("incidents", "list", "--url", url, token=token)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_double_equals_matcher_is_an_error_not_the_value_with_an_equals_sign() -> None:
    from daemon.client import ClientError, parse_matcher

    with pytest.raises(ClientError, match="'==' is not an operator; write feature=x"):
        parse_matcher("feature==x")
    assert parse_matcher("feature=x")["value"] == "x"
    assert parse_matcher("feature=~a=b")["value"] == "a=b"
