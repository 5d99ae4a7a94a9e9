"""A real Alertmanager (Debian's package) posts its webhook to a real daemon.

The route and receiver are `deploy/alertmanager/alertmanager.yml` as shipped, pointed at the
test daemon, with the bearer token its comment describes and group timings shortened. Alerts
go in through Alertmanager's own API, as Prometheus would send them:
- an alert with a `feature` label opens an incident; a second one joins that incident (the
  time from posting to Alertmanager to the incident showing the signal is measured and logged);
- resolving it in Alertmanager clears the signal (send_resolved);
- an alert without a feature, even when routed to the daemon, is answered 2xx: Alertmanager
  records no failed notification (a 4xx would be retried every group_interval, forever), and
  the daemon counts it in events_unused{reason="alert_no_feature"}.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, DaemonProcess, start_daemon
from tests.integration.servers import Server, alertmanager, get_text, http_json, wait_for
from tests.integration.test_prometheus import _prom_samples

TOKEN = "it-token-0123456789abcdef"
FEATURE = "support-bot"


@pytest.fixture
def daemon_with_token(tmp_path: Path) -> Iterator[DaemonProcess]:
    d = start_daemon(
        tmp_path,
        env={"LLM_ONCALL_INGEST__TOKEN": TOKEN, "LLM_ONCALL_AGGREGATION__TICK_S": "1"},
    )
    try:
        yield d
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=15)


def _config(tmp: Path, daemon_url: str) -> Path:
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    route = next(r for r in config["route"]["routes"] if r["receiver"] == "llm-oncall")
    route |= {"group_wait": "0s", "group_interval": "1s"}
    # Routed like the ones with a feature, to see the daemon's answer to one without.
    no_feature = route | {"matchers": ['alertname="NoFeature"']}
    config["route"]["routes"].append(no_feature)
    token_file = tmp / "llm-oncall-token"
    token_file.write_text(TOKEN + "\n")
    hook = next(r for r in config["receivers"] if r["name"] == "llm-oncall")["webhook_configs"][0]
    hook["url"] = daemon_url + "/v1/alertmanager"
    hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _post_alert(am: Server, labels: dict[str, str], resolved: bool = False) -> float:
    now = datetime.now(UTC)
    alert: dict[str, Any] = {"labels": labels, "startsAt": (now - timedelta(seconds=1)).isoformat()}
    if resolved:
        alert["endsAt"] = now.isoformat()
    t0 = time.monotonic()
    status, answer = http_json(am.url + "/api/v2/alerts", [alert])
    assert status == 200, answer
    return t0


def _incidents(d: DaemonProcess) -> list[dict[str, Any]]:
    status, answer = http_json(d.url + f"/api/v1/incidents?feature={FEATURE}")
    assert status == 200, answer
    return list(answer["incidents"])


def _signal(d: DaemonProcess, metric: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    for inc in _incidents(d):
        for sig in inc["signals"]:
            if sig["metric"] == metric:
                return inc, sig
    return None


def _am_counter(am: Server, name: str) -> float:
    return sum(
        v
        for n, labels, v in _prom_samples(get_text(am.url + "/metrics"))
        if n == name and labels.get("integration") == "webhook"
    )


def test_real_alertmanager_alerts_join_an_incident(
    tmp_path: Path, daemon_with_token: DaemonProcess
) -> None:
    d = daemon_with_token
    with alertmanager(tmp_path, _config(tmp_path, d.url)) as am:
        labels = {"alertname": "VectorStoreSlow", "feature": FEATURE, "layer": "infra"}
        _post_alert(am, labels)
        first, _ = wait_for("the first alert's incident", lambda: _signal(d, "VectorStoreSlow"))

        t0 = _post_alert(am, {"alertname": "GpuNodeDown", "feature": FEATURE})
        joined, sig = wait_for(
            "the second alert in the incident", lambda: _signal(d, "GpuNodeDown")
        )
        elapsed = time.monotonic() - t0
        print(f"\nAlertmanager alert -> incident update: {elapsed * 1000:.0f} ms (group_wait 0s)")
        assert joined["id"] == first["id"], "the alert should join the open incident"
        assert sig["detector"] == "alertmanager" and sig["layer"] == "infra"
        assert elapsed < 5, elapsed

        _post_alert(am, labels, resolved=True)
        wait_for(
            "the resolved alert to clear its signal",
            lambda: (s := _signal(d, "VectorStoreSlow")) is not None and s[1]["cleared"],
        )

        _post_alert(am, {"alertname": "NoFeature", "severity": "warning"})
        unused = 'llm_oncall_events_unused_total{reason="alert_no_feature"}'

        def counted() -> float:
            text = get_text(d.url + "/metrics")
            return sum(
                v
                for n, lab, v in _prom_samples(text)
                if n == "llm_oncall_events_unused_total" and lab["reason"] == "alert_no_feature"
            )

        assert wait_for(f"{unused} to count the alert", counted) >= 1
        sent = _am_counter(am, "alertmanager_notifications_total")
        failed = _am_counter(am, "alertmanager_notifications_failed_total")
        assert sent >= 3 and failed == 0, (sent, failed, am.log())
        assert _signal(d, "NoFeature") is None


def _webhook(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "receiver": "llm-oncall", "alerts": alerts}


@pytest.mark.parametrize("default_feature", [None, "platform"])
def test_an_alert_without_a_feature_is_never_a_4xx(
    tmp_path: Path, default_feature: str | None
) -> None:
    """Through the daemon process, with and without `alertmanager.default_feature`."""
    env = {"LLM_ONCALL_AGGREGATION__TICK_S": "1"}
    if default_feature:
        env["LLM_ONCALL_ALERTMANAGER__DEFAULT_FEATURE"] = default_feature
    d = start_daemon(tmp_path, env=env)
    try:
        body = _webhook([
            {"status": "firing", "labels": {"alertname": "NodeDown"}, "fingerprint": "a1"},
            {"status": "firing", "labels": {"alertname": "Bad", "feature": "x", "layer": "gpu"}},
        ])  # fmt: skip
        status, answer = http_json(d.url + "/v1/alertmanager", body)
        assert status == 200, answer
        assert [r["index"] for r in answer["rejected"]] == [1]  # a bad alert is still named
        if default_feature is None:
            assert answer["accepted"] == 0 and [x["index"] for x in answer["dropped"]] == [0]
            counted = {
                lab["reason"]: v
                for n, lab, v in _prom_samples(get_text(d.url + "/metrics"))
                if n == "llm_oncall_events_unused_total"
            }
            assert counted.get("alert_no_feature") == 1, counted
        else:
            assert answer["accepted"] == 1 and "dropped" not in answer, answer
            status, found = http_json(d.url + f"/api/v1/incidents?feature={default_feature}")
            metrics = [s["metric"] for i in found["incidents"] for s in i["signals"]]
            assert metrics == ["NodeDown"], found
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=15)
