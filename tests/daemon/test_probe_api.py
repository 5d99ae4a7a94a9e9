"""Found by the probe of the merged daemon after issue 8 (docs/reliability.md, "Found by the
probe after the fixes"): API input checks, through the real daemon process."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from tests.conftest import DaemonProcess
from tests.e2e.harness import wait_for

JSON = {"Content-Type": "application/json"}


def send(
    d: DaemonProcess,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    data = None if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    req = urllib.request.Request(d.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def silence(**kw: Any) -> dict[str, Any]:
    return {"matchers": [{"name": "feature", "value": "bot"}], "ends_at": time.time() + 600} | kw


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (silence(id="a\nb\u0000"), "silence.id: must not contain control characters"),
        (silence(id=" cfg-0"), "silence.id: must be non-empty, without leading or trailing"),
        (silence(id="sil-1 "), "silence.id: must be non-empty, without leading or trailing"),
        (
            silence(matchers=[{"name": "feat\u0000ure", "value": "x"}]),
            "silence.matchers[0].name: must not contain control characters",
        ),
        (
            silence(matchers=[{"name": "feature", "value": "x\n"}]),
            "silence.matchers[0].value: must not contain control characters",
        ),
        (silence(created_by="me\u001b[31m"), "silence.created_by: must not contain control"),
    ],
)
def test_silence_strings_with_control_characters_are_a_400(
    daemon: DaemonProcess, body: dict[str, Any], field: str
) -> None:
    """Probe N6."""
    code, raw = send(daemon, "POST", "/api/v1/silences", body, JSON)
    assert code == 400, raw
    assert orjson.loads(raw)["error"].startswith(field), raw
    assert orjson.loads(send(daemon, "GET", "/api/v1/silences")[1])["silences"] == []


def test_reserved_silence_prefix_is_case_insensitive(daemon: DaemonProcess) -> None:
    """Probe N6: `CFG-0` passed for a config silence in every listing."""
    code, raw = send(daemon, "POST", "/api/v1/silences", silence(id="CFG-0"), JSON)
    assert code == 409 and "reserved" in orjson.loads(raw)["error"], raw
    code, raw = send(daemon, "POST", "/api/v1/silences", silence(comment="two\nlines"), JSON)
    assert code == 201, raw  # a newline in a comment is fine


@pytest.mark.parametrize("limit", ["-1", "0", "1001", "99999999999"])
def test_incident_limit_out_of_range_is_a_400(daemon: DaemonProcess, limit: str) -> None:
    """Probe N7: -1 and 0 silently gave 1 incident, a huge limit everything."""
    code, raw = send(daemon, "GET", f"/api/v1/incidents?limit={limit}")
    assert code == 400 and orjson.loads(raw) == {"error": "limit: must be between 1 and 1000"}
    for ok in ("1", "1000"):
        assert send(daemon, "GET", f"/api/v1/incidents?limit={ok}")[0] == 200


@pytest.mark.parametrize("path", ["/v1/alertmanager", "/api/v1/silences"])
@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "application/x-ndjson"]
)
def test_json_endpoints_refuse_other_content_types(
    daemon: DaemonProcess, path: str, ctype: str
) -> None:
    """Probe N9: these two ignored Content-Type while /v1/events and /v1/traces gave 415."""
    body = {"alerts": []} if path == "/v1/alertmanager" else silence()
    code, raw = send(daemon, "POST", path, body, {"Content-Type": ctype})
    assert code == 415, raw
    assert "takes application/json" in orjson.loads(raw)["error"]


def test_alertmanager_real_content_type_and_none_still_work(daemon: DaemonProcess) -> None:
    alert = {"status": "firing", "labels": {"feature": "bot", "alertname": "GpuDown"}}
    import http.client

    for headers in ({"Content-Type": "application/json; charset=utf-8"}, {}):
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
        conn.request("POST", "/v1/alertmanager", orjson.dumps({"alerts": [alert]}), headers)
        resp = conn.getresponse()
        assert resp.status == 200 and orjson.loads(resp.read())["accepted"] == 1, headers
        conn.close()
    assert send(daemon, "POST", "/api/v1/silences", silence(), JSON)[0] == 201


def test_postmortem_escapes_user_strings(daemon: DaemonProcess) -> None:
    """Probe N8: a feature name, an alert name and a change description reached the
    Markdown postmortem raw (a script tag, a heading)."""
    evil = "<script>alert(2)</script>\n# md injection"
    feature = "f<img src=x onerror=alert(1)>"
    alert = {
        "status": "firing",
        "labels": {
            "feature": feature,
            "alertname": "<b>X</b> ## [two](javascript:x)",
            "page_alone": "true",
        },
    }
    change = {
        "type": "change",
        "ts": time.time(),
        "kind": "deploy",
        "feature": feature,
        "description": evil,
    }
    assert send(daemon, "POST", "/v1/events", [change], JSON)[0] == 200
    time.sleep(0.2)  # the change before the alert, so the incident lists it
    assert send(daemon, "POST", "/v1/alertmanager", {"alerts": [alert]}, JSON)[0] == 200

    def incident() -> Any:
        found = orjson.loads(send(daemon, "GET", "/api/v1/incidents")[1])["incidents"]
        return found[0] if found else None

    inc = wait_for("the incident", incident, timeout=10)
    code, raw = send(daemon, "GET", f"/api/v1/incidents/{inc['id']}/postmortem")
    assert code == 200
    md = raw.decode()
    assert "<script>" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script&gt;" in md and "&lt;img src=x onerror=alert\\(1\\)&gt;" in md
    heading_lines = [line for line in md.splitlines() if line.startswith("#")]
    assert all(line.startswith(("# Postmortem: ", "## ")) for line in heading_lines), md
    assert not any("md injection" in h or "two" in h for h in heading_lines[1:])
    assert "\\# md injection" in md and "\\[two\\]\\(javascript:x\\)" in md
