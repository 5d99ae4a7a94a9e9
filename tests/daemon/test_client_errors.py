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
        ("http://[::1", None, "is not an http(s) URL"),
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


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("incidents", "list", "extra"), "incidents list takes no incident id (got 'extra')"),
        (("silence", "list", "extra"), "silence list takes no arguments (got 'extra')"),
    ],
)
def test_a_stray_argument_is_a_usage_error(args: tuple[str, ...], says: str) -> None:
    """Probe finding: `incidents list extra` ignored the word and exited 0. It is a usage
    error (exit 2, as argparse's own), before anything is sent: the URL is not reachable."""
    done = run_cli(*args, "--url", "http://127.0.0.1:9")
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_output_to_a_closed_pipe_ends_quietly() -> None:
    """Probe finding: `silence list --all -o json | head -c 300` ended in a BrokenPipeError
    traceback. The reader going away ends the command quietly, as for standard tools."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    silences = [
        {"id": f"s{i}", "matchers": [{"name": "feature", "value": "x" * 50}], "state": "active",
         "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z"}
        for i in range(3000)
    ]  # fmt: skip
    body = json.dumps({"silences": silences}).encode()  # far more than a pipe's buffer

    class Daemon(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Daemon)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "silence", "list", "--all", "-o", "json",
             "--url", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        assert len(proc.stdout.read(300)) == 300
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(60) == 141  # 128 + SIGPIPE, what a shell reports for `cat`
        assert err == ""
    finally:
        server.shutdown()
        server.server_close()
