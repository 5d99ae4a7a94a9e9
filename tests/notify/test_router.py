from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from config.receivers import ReceiverConfig, RouteConfig
from daemon.notify import Router, RouteTarget
from tests.notify.helpers import PD_KEY, incident


def receivers(*names: str) -> list[Any]:
    return TypeAdapter(list[ReceiverConfig]).validate_python(
        [{"name": n, "type": "log"} for n in names]
    )


def routes(data: list[dict[str, Any]]) -> list[RouteConfig]:
    return TypeAdapter(list[RouteConfig]).validate_python(data)


def test_defaults_by_domain_and_severity() -> None:
    r = Router(receivers("chat", "sre", "ml", "low-urgency"), [])
    assert r.route(incident(domain="prompt_model")) == ["ml"]
    assert r.route(incident(domain="provider")) == ["sre"]
    assert r.route(incident(domain="infra_retrieval")) == ["sre"]
    assert r.route(incident(domain="unknown")) == ["chat"]
    assert r.route(incident(severity="warning", domain="prompt_model")) == ["low-urgency"]
    assert r.route(incident(severity="watch")) == []


def test_defaults_fall_back_to_first_receiver_and_builtin_log() -> None:
    assert Router(receivers("pager"), []).route(incident(domain="prompt_model")) == ["pager"]
    assert Router([], []).route(incident()) == ["log"]
    assert Router(receivers("pager"), []).route(incident(severity="warning")) == ["pager"]


def test_first_match_wins_unless_continue() -> None:
    rs = receivers("ml", "sre", "chat")
    r = Router(
        rs,
        routes(
            [
                {"match": {"domain": "prompt_model"}, "receiver": "ml", "continue": True},
                {
                    "match": {"severity": ["critical", "warning"]},
                    "receiver": "sre",
                    "fallback": "chat",
                    "renotify_s": 3600,
                },
                {"receiver": "chat"},
            ]
        ),
    )
    assert r.route(incident(domain="prompt_model")) == ["ml", "sre"]
    assert r.route(incident(domain="provider")) == ["sre"]
    assert r.targets(incident(domain="provider")) == [RouteTarget("sre", "chat", 3600)]
    assert r.route(incident(severity="watch", domain="provider")) == ["chat"]


def test_feature_regex_and_labels() -> None:
    rs = receivers("search", "bots", "exp")
    r = Router(
        rs,
        routes(
            [
                {"match": {"labels": {"experiment": ["exp-7", "exp-8"]}}, "receiver": "exp"},
                {"match": {"feature_re": "search(-.*)?"}, "receiver": "search"},
                {"match": {"feature": ["support-bot", "sales-bot"]}, "receiver": "bots"},
            ]
        ),
    )
    assert r.route(incident(feature="search-eu")) == ["search"]
    assert r.route(incident(feature="research")) == []  # full match, not search
    assert r.route(incident(feature="sales-bot")) == ["bots"]
    with_exp = incident(
        feature="sales-bot",
        attribution=[
            {"label": "experiment", "value": "exp-8", "anomalous_share": 0.9, "baseline_share": 0.1}
        ],
    )
    assert r.route(with_exp) == ["exp"]
    # signal metadata counts too: a signal's labels and its own fields
    sig = incident(feature="x", attribution=[])
    sig["signals"][0]["labels"] = {"experiment": "exp-7"}
    assert r.route(sig) == ["exp"]


def test_label_match_on_signal_fields() -> None:
    r = Router(
        receivers("quality", "other"),
        routes(
            [
                {"match": {"labels": {"layer": "quality"}}, "receiver": "quality"},
                {"receiver": "other"},
            ]
        ),
    )
    inc = incident()
    assert r.route(inc) == ["other"]
    inc["signals"][0]["layer"] = "quality"
    assert r.route(inc) == ["quality"]


def test_pd_key_not_needed_for_router() -> None:
    rs = TypeAdapter(list[ReceiverConfig]).validate_python(
        [{"name": "sre", "type": "pagerduty", "routing_key": PD_KEY}]
    )
    assert Router(rs, []).route(incident(domain="prompt_model")) == ["sre"]
