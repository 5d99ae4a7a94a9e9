"""A real Prometheus (Debian's package) scrapes a real daemon with the shipped config and rules.

- every `/metrics` series is unique (parsed from the exposition; Prometheus would keep only
  one of two samples with the same labels and count the other as a duplicate);
- Prometheus, on `deploy/prometheus/scrape.yaml` and `rules.yaml` (intervals shortened to 1 s),
  scrapes the daemon: the raw counters read back through its HTTP API equal what was sent, all
  recording and alerting rules evaluate without error, the recording rules have series;
- the shipped alerts neither fire nor stay pending on a fresh, healthy daemon;
- every PromQL expression of the Grafana dashboard evaluates on that Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, DaemonProcess, start_daemon
from tests.integration.servers import Server, get_text, http_json, prometheus, query, wait_for
from tests.integration.traffic import FEATURE, events, llm_calls, send

DEPLOY = ROOT / "deploy"
FAST = {"LLM_ONCALL_AGGREGATION__TICK_S": "1"}  # a tick per scrape, so ticks_total moves


@pytest.fixture
def fed_daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int]]:
    d = start_daemon(tmp_path, env=FAST)
    body = events(40)
    send(d, body)
    try:
        yield d, llm_calls(body)
    finally:
        d.proc.terminate()
        d.proc.wait(timeout=15)


def _series(text: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    return [
        (s.name, tuple(sorted(s.labels.items())))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def test_every_metrics_series_is_unique(fed_daemon: tuple[DaemonProcess, int]) -> None:
    d, _ = fed_daemon
    # The availability watch (two static rules and a binomial one) exists after a tick.

    def with_availability() -> str | None:
        text = get_text(d.url + "/metrics")
        return text if 'metric="availability"' in text else None

    text = wait_for("the availability detectors in /metrics", with_availability)
    series = _series(text)
    dupes = [s for s, n in Counter(series).items() if n > 1]
    assert not dupes, f"duplicate series in /metrics: {dupes}"
    firing = [dict(labels) for name, labels in series if name == "llm_oncall_detector_firing"]
    availability = [f for f in firing if f["metric"] == "availability"]
    assert sum(f["detector"] == "static" for f in availability) >= 2, availability


def _prometheus_dir(tmp: Path, target: str) -> Path:
    """The shipped scrape.yaml, rules.yaml and targets file, pointed at `target`, with 1 s
    intervals. Nothing else changes, so the shipped files are what runs."""
    work = tmp / "prometheus"
    shutil.copytree(DEPLOY / "prometheus", work)
    scrape = yaml.safe_load((work / "scrape.yaml").read_text())
    scrape["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in scrape["scrape_configs"]:
        job["scrape_timeout"] = "1s"
    (work / "scrape.yaml").write_text(yaml.safe_dump(scrape))
    rules = yaml.safe_load((work / "rules.yaml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    (work / "rules.yaml").write_text(yaml.safe_dump(rules))
    targets = [{"targets": [target], "labels": {"namespace": "it", "pod": "daemon-0"}}]
    for path in (work / "targets").glob("*.yaml"):
        path.unlink()
    (work / "targets" / "it.yaml").write_text(yaml.safe_dump(targets))
    return work / "scrape.yaml"


def _rules(prom: Server) -> list[dict[str, Any]]:
    status, answer = http_json(prom.url + "/api/v1/rules")
    assert status == 200, answer
    return [r for g in answer["data"]["groups"] for r in g["rules"]]


def _dashboard_queries() -> list[str]:
    """Every PromQL expression in the dashboard, with Grafana's variables filled in."""
    dash = json.loads((DEPLOY / "grafana" / "llm-oncall.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if t.get("expr")]
    exprs += [a["expr"] for a in dash["annotations"]["list"] if a.get("expr")]
    subst = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
    out = []
    for expr in exprs:
        for var, value in subst.items():
            expr = expr.replace(var, value)
        out.append(re.sub(r"\$\{?(\w+)\}?", ".*", expr))  # template variables: All
    return out


def test_real_prometheus_scrapes_the_daemon_with_the_shipped_rules(
    tmp_path: Path, fed_daemon: tuple[DaemonProcess, int]
) -> None:
    d, calls = fed_daemon
    config = _prometheus_dir(tmp_path, f"127.0.0.1:{d.port}")
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text())
    expected_rules = sum(len(g["rules"]) for g in shipped["groups"])
    with prometheus(tmp_path, config) as prom:
        wait_for("the daemon to be up", lambda: query(prom, 'up{job="llm-oncall"} == 1'))

        # Raw counters read back through Prometheus equal what the daemon was sent.
        sent = query(prom, f'sum(llm_oncall_llm_requests_total{{feature="{FEATURE}"}})')
        assert sent and float(sent[0]["value"][1]) == calls, sent

        # Every rule loaded and evaluated without error; the recording rules have series.

        def evaluated() -> list[dict[str, Any]] | None:
            rules = _rules(prom)
            return rules if all(r["health"] != "unknown" for r in rules) else None

        rules = wait_for("every rule to be evaluated", evaluated)
        assert len(rules) == expected_rules, [r["name"] for r in rules]
        broken = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
        assert not broken, broken
        for record in ("llm_oncall:llm_requests:rate5m", "llm_oncall:llm_tokens:rate5m",
                       "llm_oncall:llm_request_duration_seconds:p95_5m",
                       "llm_oncall:llm_requests_availability:ratio_rate5m",
                       "llm_oncall:score:mean15m"):  # fmt: skip
            found = wait_for(f"{record} to have series", lambda r=record: query(prom, r))
            assert {s["metric"].get("feature") for s in found} == {FEATURE}, found
            assert {s["metric"].get("namespace") for s in found} == {"it"}, found

        # A fresh, healthy daemon: no alert fires or is pending. Two more evaluations first:
        # one that ran before the first scrape may still hold `absent(up)` pending.
        time.sleep(2)
        seen: list[dict[str, Any]] = []
        for _ in range(2):
            seen += http_json(prom.url + "/api/v1/alerts")[1]["data"]["alerts"]
            time.sleep(0.5)
        assert not seen, [(a["labels"]["alertname"], a["state"]) for a in seen]

        # Prometheus saw no two samples of one series in a scrape.
        own = {n: v for n, _, v in _prom_samples(get_text(prom.url + "/metrics"))}
        assert own["prometheus_target_scrapes_sample_duplicate_timestamp_total"] == 0

        # Every dashboard expression evaluates (`query` fails on a PromQL error), and the
        # panels on the LLM recording rules show the traffic sent (no incident or page here).
        empty = []
        for expr in _dashboard_queries():
            on_llm_rules = "llm_oncall:llm_" in expr or "llm_oncall:score" in expr
            if not query(prom, expr) and on_llm_rules:
                empty.append(expr)
        assert not empty, empty


def _prom_samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            yield s.name, s.labels, s.value
