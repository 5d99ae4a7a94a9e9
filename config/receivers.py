"""Receivers, routes and outbox settings: where pages go and how hard we try.

`receivers` and `routes` are contract keys (DESIGN.md "Configuration"). Every secret may be
given inline, as `<key>_file` (a path read once at load), or through the environment
(`LLM_ONCALL_RECEIVERS__0__ROUTING_KEY`). Secrets are `SecretStr`: they print as `**********`
in reprs, errors and logs.

PagerDuty is the primary receiver. Opsgenie is supported, but Atlassian stopped selling it on
2025-06-04 and ends support (and its REST API) on 2027-04-05; plan for PagerDuty or Jira
Service Management.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

__all__ = [
    "BUILTIN_LOG_RECEIVER",
    "LogReceiver",
    "NotifyConfig",
    "OpsgenieReceiver",
    "OpsgenieResponder",
    "PagerDutyReceiver",
    "ReceiverConfig",
    "RouteConfig",
    "RouteMatch",
    "SlackReceiver",
    "WebhookReceiver",
    "effective_receivers",
    "validate_routes",
]

OPSGENIE_REGION_URLS = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _secret(value: SecretStr | None, path: Path | None, key: str) -> SecretStr:
    """The secret from `key` or from the file named by `key_file`; one of them is required."""
    secret = optional_secret(value, path, key)
    if secret is None:
        raise ValueError(f"{key} or {key}_file is required")
    return secret


def optional_secret(value: SecretStr | None, path: Path | None, key: str) -> SecretStr | None:
    """The secret from `key` or from the file named by `key_file`, or None when neither is
    given. Every secret of the config goes through here (receivers, `ingest.token`,
    `api.read_token`), so the rules are the same for all: both at once is an error (which one
    wins would be a guess, and a missing file would go unnoticed), and so is an empty value or
    file: an empty token would admit an empty `Authorization: Bearer `."""
    if value is not None and path is not None:
        raise ValueError(f"give {key} or {key}_file, not both")
    if value is not None:
        if not value.get_secret_value().strip():
            raise ValueError(f"{key} is empty")
        return value
    if path is None:
        return None
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{key}_file: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ValueError(f"{key}_file: {path} is empty")
    return SecretStr(text)


def _http_url(url: str, key: str) -> str:
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"{key} must be an http(s) URL")
    return url.rstrip("/")


class _ReceiverBase(_Strict):
    name: str = Field(pattern=_NAME_RE)


class PagerDutyReceiver(_ReceiverBase):
    """PagerDuty Events API v2 (`POST {url}/v2/enqueue`), the primary receiver."""

    type: Literal["pagerduty"]
    routing_key: SecretStr | None = None
    routing_key_file: Path | None = None
    url: str = "https://events.pagerduty.com"
    # PagerDuty allows about 120 events per minute per integration key.
    rate_limit_per_min: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _load(self) -> PagerDutyReceiver:
        key = _secret(self.routing_key, self.routing_key_file, "routing_key")
        # The Events API v2 integration key is 32 characters; anything else would be a 400
        # (a dead letter) at 3 a.m., so say it now.
        if len(key.get_secret_value()) != 32:
            raise ValueError("routing_key must be the 32-character Events API v2 integration key")
        self.routing_key = key
        self.url = _http_url(self.url, "url")
        return self

    def secret(self) -> str:
        assert self.routing_key is not None
        return self.routing_key.get_secret_value()


class OpsgenieResponder(_Strict):
    type: Literal["team", "user", "escalation", "schedule"]
    id: str | None = None
    name: str | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> OpsgenieResponder:
        if not (self.id or self.name or self.username):
            raise ValueError("a responder needs id, name or username")
        return self

    def to_api(self) -> dict[str, str]:
        out: dict[str, str] = {"type": self.type}
        for key in ("id", "name", "username"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


class OpsgenieReceiver(_ReceiverBase):
    """Opsgenie Alert API v2. Atlassian ends Opsgenie support on 2027-04-05."""

    type: Literal["opsgenie"]
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    region: Literal["us", "eu"] = "us"
    url: str | None = None  # overrides region
    responders: list[OpsgenieResponder] = Field(default_factory=list, max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=20)
    # Opsgenie answers 202 before processing; confirm polls the request status.
    confirm: bool = False
    rate_limit_per_min: float | None = Field(default=None, gt=0)

    @field_validator("tags")
    @classmethod
    def _tag_length(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not tag or len(tag) > 50:
                raise ValueError(f"tag {tag!r}: Opsgenie tags are 1 to 50 characters")
        return tags

    @model_validator(mode="after")
    def _load(self) -> OpsgenieReceiver:
        self.api_key = _secret(self.api_key, self.api_key_file, "api_key")
        self.url = _http_url(self.url or OPSGENIE_REGION_URLS[self.region], "url")
        return self

    def secret(self) -> str:
        assert self.api_key is not None
        return self.api_key.get_secret_value()

    @property
    def base_url(self) -> str:
        return self.url or OPSGENIE_REGION_URLS[self.region]


class SlackReceiver(_ReceiverBase):
    """Slack incoming webhook. The webhook URL is itself the credential: a secret."""

    type: Literal["slack"]
    url: SecretStr | None = None
    url_file: Path | None = None
    rate_limit_per_min: float | None = Field(default=60.0, gt=0)  # Slack: about 1 message/s

    @model_validator(mode="after")
    def _load(self) -> SlackReceiver:
        url = _secret(self.url, self.url_file, "url")
        _http_url(url.get_secret_value(), "url")
        self.url = url
        return self

    def secret(self) -> str:
        assert self.url is not None
        return self.url.get_secret_value()


class WebhookReceiver(_ReceiverBase):
    """Generic JSON webhook, optionally signed with HMAC-SHA256."""

    type: Literal["webhook"]
    url: str
    hmac_secret: SecretStr | None = None
    hmac_secret_file: Path | None = None
    # Header values often carry tokens (Authorization), so they are secrets too.
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    rate_limit_per_min: float | None = Field(default=None, gt=0)
    # Bodies above this are shrunk, least useful parts first (a 413 would be a dead letter).
    max_body_bytes: int = Field(default=512_000, ge=16_384)

    @model_validator(mode="after")
    def _load(self) -> WebhookReceiver:
        self.url = _http_url(self.url, "url")
        if self.hmac_secret is not None or self.hmac_secret_file is not None:
            self.hmac_secret = _secret(self.hmac_secret, self.hmac_secret_file, "hmac_secret")
        return self


class LogReceiver(_ReceiverBase):
    """Pages written to the daemon's log, not sent anywhere (the embedded default)."""

    type: Literal["log"]


ReceiverConfig = Annotated[
    PagerDutyReceiver | OpsgenieReceiver | SlackReceiver | WebhookReceiver | LogReceiver,
    Field(discriminator="type"),
]

BUILTIN_LOG_RECEIVER = LogReceiver(type="log", name="log")


def effective_receivers(receivers: Sequence[Any]) -> list[Any]:
    """The configured receivers, or the built-in log receiver when none is configured."""
    return list(receivers) if receivers else [BUILTIN_LOG_RECEIVER]


StrOrList = str | list[str]


def _as_list(value: StrOrList | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class RouteMatch(_Strict):
    """All given keys must match; a key given as a list matches any of its values."""

    severity: list[str] | None = None
    domain: list[str] | None = None
    feature: list[str] | None = None
    feature_re: str | None = None  # full match, Python `re` syntax
    labels: dict[str, list[str]] | None = None

    @field_validator("severity", "domain", "feature", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return _as_list(value) if isinstance(value, str | list) else value

    @field_validator("labels", mode="before")
    @classmethod
    def _listify_labels(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: _as_list(v) if isinstance(v, str | list) else v for k, v in value.items()}
        return value

    @field_validator("severity")
    @classmethod
    def _known_severity(cls, value: list[str] | None) -> list[str] | None:
        for s in value or []:
            if s not in ("critical", "warning", "watch"):
                raise ValueError(f"severity {s!r} is not one of critical, warning, watch")
        return value

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: list[str] | None) -> list[str] | None:
        for d in value or []:
            if d not in ("provider", "prompt_model", "infra_retrieval", "unknown"):
                raise ValueError(
                    f"domain {d!r} is not one of provider, prompt_model, infra_retrieval, unknown"
                )
        return value

    @field_validator("feature_re")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"feature_re is not a valid regex: {exc}") from None
        return value


class RouteConfig(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match: RouteMatch = Field(default_factory=RouteMatch)
    receiver: str
    continue_: bool = Field(default=False, alias="continue")
    renotify_s: float | None = Field(default=None, gt=0)
    fallback: str | None = None  # receiver that takes over when this one's page is dead


class NotifyConfig(_Strict):
    """Outbox and delivery settings (top-level key `notify`)."""

    # None: retry until max_age_s. Otherwise also dead after this many attempts.
    max_attempts: int | None = Field(default=None, ge=1)
    max_age_s: float = Field(default=24 * 3600.0, gt=0)
    base_backoff_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=8, ge=1, le=256)
    poll_interval_s: float = Field(default=5.0, gt=0)
    # Longest Retry-After we obey as given; longer values are clamped (max_age still applies).
    max_retry_after_s: float = Field(default=3600.0, gt=0)
    keep_sent_s: float = Field(default=7 * 24 * 3600.0, ge=0)  # sent rows are pruned after this
    # Alertmanager's group_wait: an incident's first notification waits this long after it
    # opened, so the signals that co-occur with the first one join it and one page goes out
    # at their joint severity (issue 13: a warning page, then 0.4 ms later a critical one).
    # Runs on event time, so replay waits the same. 0 = page at once.
    group_wait_s: float = Field(default=30.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _backoff_order(self) -> NotifyConfig:
        if self.max_backoff_s < self.base_backoff_s:
            raise ValueError("max_backoff_s must be >= base_backoff_s")
        return self


def validate_routes(receivers: Sequence[Any], routes: Sequence[RouteConfig]) -> list[str]:
    """Errors, each naming its YAML path, for duplicate receivers and unknown route targets."""
    errors: list[str] = []
    names: set[str] = set()
    for i, r in enumerate(receivers):
        if r.name in names:
            errors.append(f"receivers[{i}].name: duplicate receiver name {r.name!r}")
        names.add(r.name)
    known = {r.name for r in effective_receivers(receivers)}
    for i, route in enumerate(routes):
        if route.receiver not in known:
            errors.append(f"routes[{i}].receiver: unknown receiver {route.receiver!r}")
        if route.fallback is not None:
            if route.fallback not in known:
                errors.append(f"routes[{i}].fallback: unknown receiver {route.fallback!r}")
            elif route.fallback == route.receiver:
                errors.append(f"routes[{i}].fallback: must differ from the route's receiver")
    return errors
