"""Silences through the real daemon process (issue 8, defect 6): bounded, validated times with
a 400 that names the field and nothing stored; config silences read-only; a bad stored row
skipped at start-up; RE2 matchers that cannot backtrack catastrophically."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from correlator import Matcher, Silence, rfc3339
from tests.conftest import DaemonProcess, start_daemon

NOW = time.time()
ROOT = Path(__file__).resolve().parents[2]
FEATURE = {"name": "feature", "value": "bot"}


def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    # JSON, as a real client says (urllib alone would send a form type, answered 415).
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


def stop(d: DaemonProcess) -> None:
    d.proc.terminate()
    try:
        d.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        d.proc.kill()


@pytest.fixture
def config_daemon(tmp_path: Path) -> Any:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "silences:\n"
        "  - {matchers: [{name: feature, value: maint}], ends_at: 4102444800, comment: file}\n"
    )
    d = start_daemon(tmp_path, config=cfg)
    yield d, cfg
    stop(d)


BAD_SILENCES = [
    # The defect: finite but beyond what RFC 3339 can write; was a 500 with the row stored.
    ({"ends_at": 1e308}, "silence.ends_at: out of range"),
    # Not representable as a double: orjson refuses the JSON, saying where.
    ({"ends_at": int("9" * 400)}, "body is not valid JSON: number is infinity"),
    ({"ends_at": "1e999"}, "silence.ends_at: not an RFC 3339 time"),
    ({"ends_at": "2030-01-01T00:00:00"}, "silence.ends_at: RFC 3339 time needs a zone"),
    ({"ends_at": True}, "silence.ends_at: expected Unix seconds or RFC 3339"),
    ({"ends_at": None}, "silence.ends_at: required, got null"),
    ({"starts_at": -5.0, "ends_at": NOW + 60}, "silence.starts_at: out of range"),
    ({"starts_at": NOW + 60, "ends_at": NOW + 30}, "silence.ends_at: must be after starts_at"),
    ({"ends_at": NOW + 400 * 86400}, "silence.ends_at: at most 366 days after starts_at"),
    ({"ends_at": NOW - 60, "starts_at": NOW - 120}, "silence.ends_at: already in the past"),
    ({"matchers": [{"name": "f", "value": "(", "is_regex": True}]}, "silence.matchers[0].value"),
    ({"matchers": [{"name": "f", "value": r"(a)\1", "is_regex": True}]}, "RE2 syntax"),
    ({"matchers": [{"name": "f", "value": "a" * 2000, "is_regex": True}]}, "longer than 1024"),
    ({"matchers": [FEATURE] * 33}, "silence.matchers: more than 32 matchers"),
    ({"comment": "x" * 5000}, "silence.comment: longer than 2048"),
    ({"id": 7}, "silence.id: expected a non-empty string"),
    # The probe's three (this issue): a silence that mutes everything, a typo in a closed
    # value, and Alertmanager's camelCase, which was ignored (so ends_at was "a NoneType").
    (
        {"matchers": [{"name": "feature", "value": ".*", "is_regex": True}]},
        "silence.matchers: at least one matcher must not match the empty string",
    ),
    (
        {"matchers": [{"name": "severity", "value": "critcal"}]},
        "silence.matchers[0].value: severity 'critcal' is not one of critical, warning, watch;"
        " did you mean 'critical'?",
    ),
    (
        {"matchers": [FEATURE, {"name": "domain", "value": "prov", "is_regex": True}]},
        "silence.matchers[1].value: domain regex 'prov' matches none of provider,",
    ),
    ({"endsAt": NOW + 3600, "ends_at": None}, "silence: unknown field 'endsAt'"),
    ({"startsAt": NOW}, "silence: unknown field 'startsAt' (did you mean 'starts_at'?)"),
    (
        {"matchers": [{"name": "feature", "value": "b.*", "isRegex": True}]},
        "silence.matchers[0]: unknown field 'isRegex' (did you mean 'is_regex'?)",
    ),
]


def test_bad_silence_is_400_naming_the_field_and_nothing_is_stored(
    daemon: DaemonProcess,
) -> None:
    # One daemon for all cases: a process per case would cost the suite ~20 s.
    for patch, error in BAD_SILENCES:
        body = {"matchers": [FEATURE], "ends_at": NOW + 3600} | patch
        status, answer = call("POST", daemon.url + "/api/v1/silences", body)
        assert status == 400, (patch, answer)
        assert error in answer["error"], (patch, answer)
        assert call("GET", daemon.url + "/api/v1/silences") == (200, {"silences": []}), patch


def test_a_missing_ends_at_says_it_is_required(daemon: DaemonProcess) -> None:
    status, answer = call("POST", daemon.url + "/api/v1/silences", {"matchers": [FEATURE]})
    assert (status, answer) == (
        400,
        {"error": "silence.ends_at: required (Unix seconds or RFC 3339 with a zone)"},
    )
    # Alertmanager's spelling alone: the unknown key is named, not a missing-field puzzle.
    status, answer = call(
        "POST", daemon.url + "/api/v1/silences", {"matchers": [FEATURE], "endsAt": NOW + 60}
    )
    assert status == 400 and answer["error"].startswith(
        "silence: unknown field 'endsAt' (did you mean 'ends_at'?)"
    ), answer
    assert call("GET", daemon.url + "/api/v1/silences") == (200, {"silences": []})


def test_cli_silence_add_refuses_mute_all_and_typos_in_one_line(daemon: DaemonProcess) -> None:
    def add(*matchers: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "LLM_ONCALL_TOKEN"}
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", "silence", "add", *matchers, "-d", "2h",
             "--url", daemon.url],
            capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
        )  # fmt: skip

    for matchers, says in [
        (("feature=~.*",), "silence.matchers: at least one matcher must not match the empty"),
        (("feature!=bot",), "silence.matchers: at least one matcher must not match the empty"),
        (("severity=critcal",), "severity 'critcal' is not one of critical, warning, watch"),
        (("feature=bot", "domain=~prov"), "domain regex 'prov' matches none of"),
    ]:
        done = add(*matchers)
        assert done.returncode == 1, (matchers, done.stdout)
        assert "HTTP 400" in done.stderr and says in done.stderr, (matchers, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert call("GET", daemon.url + "/api/v1/silences") == (200, {"silences": []})
    done = add("feature=~.*", "severity!=critical")  # narrows: every non-critical incident
    assert done.returncode == 0, done.stderr


def test_defect_body_then_restart_keeps_get_working(daemon: DaemonProcess) -> None:
    silence = {"matchers": [FEATURE], "ends_at": 1e308}
    assert call("POST", daemon.url + "/api/v1/silences", silence)[0] == 400
    ends = rfc3339(float(int(NOW) + 86400))
    good = {"id": "keep", "matchers": [FEATURE], "ends_at": ends}
    assert call("POST", daemon.url + "/api/v1/silences", good)[0] == 201
    stop(daemon)
    again = start_daemon(daemon.state_dir)
    try:
        status, body = call("GET", again.url + "/api/v1/silences")
        assert status == 200
        assert [(s["id"], s["ends_at"]) for s in body["silences"]] == [("keep", ends)]
    finally:
        stop(again)


def test_old_bad_rows_are_skipped_with_one_log_line_each(tmp_path: Path) -> None:
    """A state file written before the bounds existed: the bad rows are skipped, the good
    one comes back, start-up and GET work."""
    good = Silence("good", (Matcher("feature", "bot"),), NOW - 60, NOW + 3600, "api", "")
    rows = [
        {**good.to_dict(), "id": "huge", "ends_at": 1e308},
        good.to_dict(),
        {"id": "junk"},
        "not an object",
    ]
    db = sqlite3.connect(tmp_path / "state.db")
    db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, updated_at REAL)")
    db.execute("INSERT INTO kv VALUES ('silences', ?, 0)", (orjson.dumps({"silences": rows}),))
    db.commit()
    db.close()
    d = start_daemon(tmp_path)
    try:
        status, body = call("GET", d.url + "/api/v1/silences")
        assert status == 200
        assert [s["id"] for s in body["silences"]] == ["good"]
        assert body["silences"][0]["state"] == "active"
        skipped = [line for line in d.log().splitlines() if "silence_skipped" in line]
        assert len(skipped) == 3, skipped
        assert "silences[0].ends_at: out of range" in skipped[0]
    finally:
        stop(d)


def test_config_silences_are_read_only(config_daemon: tuple[DaemonProcess, Path]) -> None:
    d, cfg = config_daemon
    url = d.url + "/api/v1/silences"
    before = call("GET", url)
    assert [s["id"] for s in before[1]["silences"]] == ["cfg-0"]
    takeover = {"id": "cfg-0", "matchers": [FEATURE], "ends_at": NOW + 86400}
    status, answer = call("POST", url, takeover)
    assert status == 409 and "config file" in answer["error"]
    assert call("POST", url, {**takeover, "id": "cfg-99"})[0] == 409  # reserved prefix
    status, answer = call("DELETE", url + "/cfg-0")
    assert status == 409 and "read-only" in answer["error"]
    assert call("GET", url) == before
    # API silences still work next to it, and only they are persisted: with the config
    # silence removed from the file, it does not come back from the state file.
    assert (
        call("POST", url, {"id": "mine", "matchers": [FEATURE], "ends_at": NOW + 86400})[0] == 201
    )
    stop(d)
    cfg.write_text("silences: []\n")
    again = start_daemon(d.state_dir, config=cfg)
    try:
        assert [s["id"] for s in call("GET", url.replace(d.url, again.url))[1]["silences"]] == [
            "mine"
        ]
    finally:
        stop(again)


def test_redos_pattern_is_accepted_and_matches_in_linear_time(daemon: DaemonProcess) -> None:
    body = {"matchers": [{"name": "feature", "value": "(a+)+$", "is_regex": True}]}
    status, answer = call("POST", daemon.url + "/api/v1/silences", body | {"ends_at": NOW + 86400})
    assert status == 201, answer
    # Python's backtracking `re` takes minutes on this; RE2 is linear.
    matcher = Matcher("feature", "(a+)+$", is_regex=True)
    started = time.perf_counter()
    assert not matcher.matches(["a" * 100_000 + "b"])
    assert matcher.matches(["a" * 100_000])
    assert time.perf_counter() - started < 0.5
