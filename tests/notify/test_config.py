from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from config.receivers import (
    NotifyConfig,
    OpsgenieReceiver,
    PagerDutyReceiver,
    ReceiverConfig,
    RouteConfig,
    SlackReceiver,
    WebhookReceiver,
    validate_routes,
)
from tests.notify.helpers import PD_KEY

receivers_adapter = TypeAdapter(list[ReceiverConfig])
routes_adapter = TypeAdapter(list[RouteConfig])


def parse(data: list[dict[str, Any]]) -> list[Any]:
    return receivers_adapter.validate_python(data)


def test_all_receiver_types_parse_and_hide_secrets() -> None:
    rs = parse(
        [
            {"name": "sre", "type": "pagerduty", "routing_key": PD_KEY},
            {
                "name": "ml",
                "type": "opsgenie",
                "api_key": "og-key",
                "region": "eu",
                "responders": [{"type": "team", "name": "ml-oncall"}],
                "tags": ["llm"],
            },
            {"name": "chat", "type": "slack", "url": "https://hooks.slack.com/services/T/B/secret"},
            {
                "name": "hook",
                "type": "webhook",
                "url": "https://example.com/hook",
                "hmac_secret": "s3cr3t",
                "headers": {"Authorization": "Bearer tok"},
            },
            {"name": "log", "type": "log"},
        ]
    )
    pd, og, slack, hook, _ = rs
    assert isinstance(pd, PagerDutyReceiver) and pd.url == "https://events.pagerduty.com"
    assert pd.rate_limit_per_min == 120
    assert isinstance(og, OpsgenieReceiver) and og.base_url == "https://api.eu.opsgenie.com"
    assert isinstance(slack, SlackReceiver) and isinstance(hook, WebhookReceiver)
    text = repr(rs) + str(rs)
    for secret in (PD_KEY, "og-key", "services/T/B/secret", "s3cr3t", "Bearer tok"):
        assert secret not in text


def test_secret_from_file(tmp_path: Path) -> None:
    f = tmp_path / "pd.key"
    f.write_text(PD_KEY + "\n")
    (r,) = parse([{"name": "sre", "type": "pagerduty", "routing_key_file": str(f)}])
    assert r.secret() == PD_KEY


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "sre", "type": "pagerduty"}, "routing_key or routing_key_file is required"),
        ({"name": "sre", "type": "pagerduty", "routing_key": "short"}, "32-character"),
        (
            {"name": "sre", "type": "pagerduty", "routing_key_file": "/nonexistent/k"},
            "routing_key_file: cannot read",
        ),
        ({"name": "ml", "type": "opsgenie"}, "api_key or api_key_file is required"),
        ({"name": "chat", "type": "slack"}, "url or url_file is required"),
        ({"name": "ml", "type": "opsgenie", "api_key": "k", "tags": ["x" * 51]}, "1 to 50"),
        ({"name": "x", "type": "carrier-pigeon"}, "does not match any of the expected tags"),
    ],
)
def test_receiver_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse([entry])
    assert message in str(exc.value)


def test_validate_routes_names_yaml_paths() -> None:
    rs = parse(
        [
            {"name": "sre", "type": "pagerduty", "routing_key": PD_KEY},
            {"name": "sre", "type": "log"},
        ]
    )
    routes = routes_adapter.validate_python(
        [
            {"match": {"severity": "critical"}, "receiver": "sre"},
            {"match": {"domain": ["prompt_model"]}, "receiver": "foo", "fallback": "bar"},
            {"receiver": "sre", "fallback": "sre"},
        ]
    )
    assert validate_routes(rs, routes) == [
        "receivers[1].name: duplicate receiver name 'sre'",
        "routes[1].receiver: unknown receiver 'foo'",
        "routes[1].fallback: unknown receiver 'bar'",
        "routes[2].fallback: must differ from the route's receiver",
    ]


def test_routes_to_builtin_log_receiver_when_none_configured() -> None:
    routes = routes_adapter.validate_python([{"receiver": "log"}])
    assert validate_routes([], routes) == []


def test_route_match_normalises_and_checks() -> None:
    (r,) = routes_adapter.validate_python(
        [
            {
                "match": {"severity": "critical", "labels": {"model": "gpt-x"}},
                "receiver": "a",
                "continue": True,
            },
        ]
    )
    assert r.match.severity == ["critical"] and r.match.labels == {"model": ["gpt-x"]}
    assert r.continue_ is True
    for bad, msg in (
        ({"severity": "page"}, "severity 'page'"),
        ({"domain": "db"}, "domain 'db'"),
        ({"feature_re": "("}, "feature_re is not a valid regex"),
        ({"sevrity": "critical"}, "Extra inputs are not permitted"),
    ):
        with pytest.raises(ValidationError, match=msg):
            routes_adapter.validate_python([{"match": bad, "receiver": "a"}])


def test_notify_config_defaults() -> None:
    c = NotifyConfig()
    assert c.max_age_s == 86400 and c.base_backoff_s == 1 and c.max_backoff_s == 300
    assert c.timeout_s == 10 and c.max_attempts is None
    with pytest.raises(ValidationError):
        NotifyConfig(base_backoff_s=10, max_backoff_s=1)


def test_settings_loader_reports_route_errors(tmp_path: Path) -> None:
    settings = pytest.importorskip("config.settings")
    f = tmp_path / "c.yaml"
    f.write_text(
        "receivers:\n  - {name: sre, type: pagerduty, routing_key: " + PD_KEY + "}\n"
        "routes:\n  - {match: {severity: critical}, receiver: sre}\n"
        "  - {receiver: foo}\n"
    )
    with pytest.raises(settings.ConfigError) as exc:
        settings.load_settings(f)
    assert "routes[1].receiver: unknown receiver 'foo'" in str(exc.value)
    assert PD_KEY not in str(exc.value)
