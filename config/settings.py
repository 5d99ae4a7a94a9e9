"""Settings: embedded defaults, a YAML file, then `LLM_ONCALL_*` environment variables.

The top-level keys listen/state/ingest/correlation/receivers/routes/features/silences are a
contract (DESIGN.md "Configuration"); the others are extensions. Precedence follows the
twelve-factor habit: the environment overrides the file, the file overrides the defaults.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from config.receivers import (
    NotifyConfig,
    ReceiverConfig,
    RouteConfig,
    optional_secret,
    validate_routes,
)
from config.references import raw_reference_errors, rule_errors

SPLIT_RESERVED = frozenset({"provider", "model", "endpoint"})


class _Strict(BaseModel):
    # A typo in a config key should be an error that names it, not a silently ignored key.
    model_config = ConfigDict(extra="forbid")


class ListenConfig(_Strict):
    host: str = "0.0.0.0"
    port: int = Field(9477, ge=0, le=65535)
    public_url: str | None = None  # how links in pages reach this daemon's incident pages
    # Slow clients (slowloris) must not hold connections: a connection that has not sent
    # complete request headers this long after it opened (or after its previous response,
    # which makes this the keep-alive idle timeout too) is closed; a request body that has not
    # fully arrived this long after its headers gets 408 and its connection closed.
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    body_timeout_s: float = Field(30.0, gt=0, le=3600)


class StateConfig(_Strict):
    path: Path = Path("./llm-oncall-state/state.db")
    snapshot_interval_s: float = Field(60.0, gt=0)


# The smallest valid event, `{"type":"change","ts":0,"kind":"x"}` (35 bytes), with the byte
# that separates it from the next (a comma, or an NDJSON newline). A body of B bytes holds at
# most (B + 1) // 36 valid events: that is the default of `ingest.max_body_events`.
SMALLEST_EVENT_BYTES = 36


class IngestConfig(_Strict):
    token: SecretStr | None = None
    token_file: Path | None = None
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)
    # Events per request body (array items, or non-blank NDJSON lines), counted before the
    # body is parsed; past it, 413. The byte limit alone let 8 MB hold 4 million one-byte
    # items, each a rejected event with its own error (2.3 GB, an 18 s stall). None: as many
    # as the smallest valid event allows in max_body_bytes (233,016 for 8 MiB), so only a
    # body that must contain invalid items is refused; lower it to bound the work per request.
    max_body_events: int | None = Field(None, gt=0)
    lateness_s: float = Field(300.0, ge=0)
    # Cardinality caps (docs/ingest.md "Cardinality caps"): every dimension that grows with
    # the input is bounded, and what passes a cap is folded or counted, never lost silently.
    max_features: int = Field(200, gt=0)  # every event type shares it
    max_providers: int = Field(50, gt=0)  # per feature; past it: provider="__other__"
    max_models: int = Field(50, gt=0)  # per feature; past it: model="__other__"
    max_endpoints: int = Field(50, gt=0)  # per feature; past it: endpoint="__other__"
    max_series_per_feature: int = Field(100, gt=0)  # provider/model/endpoint combinations
    max_score_names: int = Field(100, gt=0)  # per feature; past it: unused, score_name_limit
    max_metric_names: int = Field(100, gt=0)  # per feature, `metric` events + Alertmanager
    max_series: int = Field(2000, gt=0)  # all features: combinations + score + metric names
    max_label_names: int = Field(20, gt=0)  # per event; the first ones given are kept
    max_label_values: int = Field(50, gt=0)  # per label name, feature and tick
    max_label_sets: int = Field(512, gt=0)  # whole label sets per feature and tick
    max_label_value_length: int = Field(200, ge=2)  # longer values are cut, ending in "…"

    @model_validator(mode="after")
    def _read_token_file(self) -> IngestConfig:
        self.token = optional_secret(self.token, self.token_file, "token")
        return self

    @property
    def body_events_limit(self) -> int:
        """`max_body_events`, or its default from `max_body_bytes`."""
        if self.max_body_events is not None:
            return self.max_body_events
        return (self.max_body_bytes + 1) // SMALLEST_EVENT_BYTES


class ApiConfig(_Strict):
    """Read access to the API and pages (issue 13). Writes (silences, ack, resolve) take the
    ingest token; with only a read token set, they take that one instead."""

    # When set, every GET of incidents, silences, the pages (`/`, `/incidents/...`) and, with
    # `protect_metrics`, `/metrics` needs it (or the ingest token) as a bearer token, or as
    # the cookie the page's sign-in form sets. /healthz and /readyz stay open for probes.
    read_token: SecretStr | None = None
    read_token_file: Path | None = None
    protect_metrics: bool = True

    @model_validator(mode="after")
    def _read_token_file(self) -> ApiConfig:
        self.read_token = optional_secret(self.read_token, self.read_token_file, "read_token")
        return self


class AggregationConfig(_Strict):
    tick_s: float = Field(15.0, gt=0)
    window_s: float = Field(300.0, gt=0)
    quality_window_s: float = Field(900.0, gt=0)
    retention_s: float = Field(7200.0, gt=0)
    # Labels whose values get k/n tests of their own (docs/detectors.md "Per-segment tests"):
    # a fault confined to one segment is diluted in the feature's rates by its share. Not
    # `experiment` by default: its arms come and go within days, a new arm has no clean
    # history of its own, and an arm that differs is the experiment's answer, not a page.
    split_labels: list[str] = Field(default_factory=lambda: ["segment"], max_length=8)
    # Values tested per split label (the first ones seen); later values are not tested
    # (counted as capped, dimension split_value). Each tested value's false-alarm budget is
    # the metric's divided by len(split_labels) x split_values.
    split_values: int = Field(8, ge=1, le=64)

    @model_validator(mode="after")
    def _windows_hold_ticks(self) -> AggregationConfig:
        if self.window_s < self.tick_s or self.quality_window_s < self.tick_s:
            raise ValueError("window_s and quality_window_s must be >= tick_s")
        return self

    @field_validator("split_labels")
    @classmethod
    def _split_label_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or "=" in name or "," in name:
                raise ValueError(f"split label {name!r} must be non-empty, without '=' or ','")
            if name in SPLIT_RESERVED:
                raise ValueError(
                    f"split label {name!r}: provider, model and endpoint already have their "
                    "own availability series"
                )
        if len(set(names)) != len(names):
            raise ValueError("split_labels has a label twice")
        return names


class CorrelationConfig(_Strict):
    window_s: float = Field(600.0, gt=0)
    min_signals: int = Field(2, ge=1)
    cooldown_s: float = Field(900.0, ge=0)
    change_lookback_s: float = Field(7200.0, ge=0)
    renotify_s: float = Field(14400.0, ge=0)  # remind every 4 h while firing; 0 = never
    # 0: a feature has at most one open incident and later signals join it (a provider outage
    # absorbs the quality drop it causes). > 0: a series first firing this long after the
    # open incident's onset opens its own incident, which inhibition may then mute.
    split_after_s: float = Field(0.0, ge=0)
    # A signal of a symptom family the open incident does not have, firing this long after the
    # incident opened, opens its own incident and page (0 = never): a flapping or stuck
    # incident must not hide the next problem.
    new_incident_after_s: float = Field(7200.0, ge=0)
    # Change events kept for incidents to quote (docs/correlator.md "Changes"): per feature,
    # for every feature (`feature: null`), and in all. Past one, the oldest go, counted.
    max_changes_per_feature: int = Field(200, ge=1)
    max_global_changes: int = Field(200, ge=1)
    max_changes: int = Field(1000, ge=1)


class RuleConfig(_Strict):
    """One detector on one metric. Rules for a metric replace that metric's defaults."""

    metric: str = Field(min_length=1)
    detector: str
    params: dict[str, Any] = Field(default_factory=dict)
    page_alone: bool = False
    enabled: bool = True

    @model_validator(mode="after")
    def _params_build(self) -> RuleConfig:
        from detectors.factory import ParameterError, build_detector

        try:
            build_detector(self.detector, self.params)
        except (ValueError, TypeError) as exc:
            # A ParameterError names the kind already; say it once, in front.
            reason = exc.reason if isinstance(exc, ParameterError) else str(exc)
            raise ValueError(f"detector {self.detector!r}: {reason}") from None
        return self


def _known_family(value: str) -> str:
    from correlator.families import FAMILY_CHOICES

    if value not in FAMILY_CHOICES:
        raise ValueError(f"unknown family {value!r}; one of: {', '.join(FAMILY_CHOICES)}")
    return value


MetricName = Annotated[str, Field(min_length=1)]
FamilyName = Annotated[str, AfterValidator(_known_family)]
"""A symptom family of `correlator.families` (or `own`): what `min_signals` counts."""


class RunbookConfig(BaseModel):
    model_config = ConfigDict(extra="allow")  # any runbook fields travel into the page
    url: str | None = None
    dashboard: str | None = None
    owner: str | None = None


class FeatureConfig(_Strict):
    runbook: RunbookConfig = Field(default_factory=RunbookConfig)
    rules: list[RuleConfig] = Field(default_factory=list)
    scores: dict[str, Literal["higher", "lower"]] = Field(default_factory=dict)
    # metric name (or "prefix*") → symptom family; over the global `families`.
    families: dict[MetricName, FamilyName] = Field(default_factory=dict)
    # Names (or "prefix*") of this feature's custom `metric` events that its rules may name
    # (config/references.py); the global list applies too.
    custom_metrics: list[MetricName] = Field(default_factory=list)


class SilenceMatcher(_Strict):
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @model_validator(mode="after")
    def _regex_compiles(self) -> SilenceMatcher:
        # The same engine (RE2), limits and closed values (severity, domain, status, layer)
        # as at run time, so check-config catches a matcher the daemon would refuse at
        # start-up.
        from correlator.silences import closed_value_error, compile_regex

        regex = compile_regex(self.value, "value") if self.is_regex else None
        problem = closed_value_error(self.name, self.value, regex)
        if problem is not None:
            raise ValueError(f"value: {problem}")
        return self


class SilenceConfig(_Strict):
    id: str | None = None
    matchers: list[SilenceMatcher] = Field(min_length=1)
    starts_at: float | None = None  # default: active from the start
    ends_at: float
    created_by: str = "config"
    comment: str = ""

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _epoch(cls, value: Any) -> Any:
        """Unix seconds, RFC 3339 with a zone, or a YAML timestamp (unquoted
        2026-11-17T20:00:00Z arrives as a datetime; YAML reads one without a zone as UTC)."""
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("must be RFC 3339 with a time zone or Unix seconds") from None
            if parsed.tzinfo is None:
                raise ValueError("needs a time zone (e.g. 2026-11-17T20:00:00Z)")
            return parsed.timestamp()
        return value

    @model_validator(mode="after")
    def _narrows(self) -> SilenceConfig:
        """A silence whose matchers all match the empty string mutes every incident; the API
        refuses it and so does the daemon at start-up (correlator/silences.py)."""
        from correlator.silences import Matcher, matchers_error

        problem = matchers_error(
            Matcher(m.name, m.value, m.is_regex, m.is_equal) for m in self.matchers
        )
        if problem is not None:
            raise ValueError(f"matchers: {problem}")
        return self

    @model_validator(mode="after")
    def _ends_after_start(self) -> SilenceConfig:
        from correlator.silences import MAX_TS, MIN_TS

        for name, value in (("starts_at", self.starts_at), ("ends_at", self.ends_at)):
            if value is not None and not MIN_TS <= value <= MAX_TS:  # NaN fails this too
                raise ValueError(f"{name}: must be between 1970-01-01 and 9999-12-31")
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class AlertmanagerConfig(_Strict):
    """`POST /v1/alertmanager`: where alerts without a `feature` label go. None (default):
    they are dropped, answered 200 and counted in events_unused{reason="alert_no_feature"},
    never a 4xx that Alertmanager would retry forever."""

    default_feature: str | None = Field(None, min_length=1, max_length=200)


class LogConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LLM_ONCALL_", env_nested_delimiter="__", extra="forbid"
    )

    listen: ListenConfig = Field(default_factory=ListenConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    correlation: CorrelationConfig = Field(default_factory=CorrelationConfig)
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    features: dict[str, FeatureConfig] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)  # apply to every feature
    scores: dict[str, Literal["higher", "lower"]] = Field(default_factory=dict)
    # metric name (or "prefix*") → symptom family for every feature (docs/correlator.md).
    families: dict[MetricName, FamilyName] = Field(default_factory=dict)
    # Names (or "prefix*") of custom `metric` events that rules may name: a rule on any other
    # name that the daemon does not compute is an error (a typo would never fire).
    custom_metrics: list[MetricName] = Field(default_factory=list)
    silences: list[SilenceConfig] = Field(default_factory=list)
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        """Routes name receivers, rules name metrics (config/references.py)."""
        errors = validate_routes(self.receivers, self.routes)
        errors += rule_errors(
            [(f"rules[{i}].metric", r.metric) for i, r in enumerate(self.rules)],
            {
                name: [
                    (f"features.{name}.rules[{i}].metric", r.metric) for i, r in enumerate(f.rules)
                ]
                for name, f in self.features.items()
            },
            self.custom_metrics,
            {name: f.custom_metrics for name, f in self.features.items()},
        )
        if errors:
            # One line per error: load_settings reports each under its own YAML path.
            raise ValueError("\n".join(errors))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides the YAML file, which arrives as init kwargs.
        # Indexed list variables (LLM_ONCALL_RECEIVERS__0__ROUTING_KEY) were already merged
        # into the file's lists by `load_settings`; the plain env source must not see them
        # as a dict replacing the whole list.
        return (
            _WithoutIndexedLists(settings_cls, env_settings),
            init_settings,
            file_secret_settings,
        )

    def feature(self, name: str) -> FeatureConfig:
        return self.features.get(name) or _EMPTY_FEATURE

    def score_direction(self, feature: str, name: str) -> str:
        return self.feature(feature).scores.get(name) or self.scores.get(name, "higher")

    def family_maps(self, feature: str) -> tuple[dict[str, str], ...]:
        """The `families` maps that apply to a feature, most specific first."""
        return (self.feature(feature).families, self.families)

    def summary(self) -> str:
        return (
            f"listen {self.listen.host}:{self.listen.port}, state {self.state.path}, "
            f"{len(self.features)} feature(s), {len(self.rules)} global rule(s), "
            f"{len(self.receivers)} receiver(s), {len(self.routes)} route(s), "
            f"{len(self.silences)} silence(s)"
        )


_EMPTY_FEATURE = FeatureConfig()
ENV_PREFIX = "LLM_ONCALL_"
_LIST_KEYS = ("receivers", "routes", "silences", "rules")


class _WithoutIndexedLists(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self._inner()
        for key in _LIST_KEYS:
            value = data.get(key)
            if isinstance(value, dict) and all(str(k).isdigit() for k in value):
                del data[key]
        return data


def _merge_indexed_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Apply `LLM_ONCALL_<LIST>__<i>__<KEY>[__<SUB>]` to item i of a list from the file.

    This is how a secret of a receiver defined in YAML is given by environment variable
    (a Kubernetes Secret as env), without repeating the whole receiver list as JSON.
    """
    errors: list[str] = []
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        parts = upper[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) < 3 or parts[0] not in _LIST_KEYS or not parts[1].isdigit():
            continue
        items = data.setdefault(parts[0], [])
        index = int(parts[1])
        if not isinstance(items, list) or index >= len(items):
            errors.append(f"{name}: {parts[0]}[{index}] is not defined in the config file")
            continue
        target = items[index]
        for key in parts[2:-1]:
            target = target.setdefault(key, {})
        target[parts[-1]] = value
    return errors


class ConfigError(Exception):
    """A config that cannot be used; `errors` are "yaml.path: message" lines."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def yaml_path(loc: tuple[int | str, ...]) -> str:
    """('features', 'bot', 'rules', 0, 'params') → features.bot.rules[0].params"""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def text_line_of(raw: bytes, offset: int) -> int:
    """The 1-based line of byte `offset` in `raw` (for an error that names the line)."""
    return raw.count(b"\n", 0, offset) + 1


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overlaid by the YAML file (if any), overlaid by the environment.

    Every problem is reported in one pass: field errors, and the reference checks
    (config/references.py) on whatever has the right shape. An error in a value that came
    from an environment variable names the variable. `*_file` paths in the file are relative
    to the file (as Prometheus and Alertmanager read theirs), not to the working directory.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
        except UnicodeDecodeError as exc:
            line = text_line_of(Path(path).read_bytes(), exc.start)
            raise ConfigError([f"{path}:{line}: not UTF-8 text (byte {exc.start})"]) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([f"{path}: the top level must be a mapping of keys"])
        data = loaded
        _resolve_files(data, Path(path).parent)
    env_errors = _merge_indexed_env(data, os.environ)
    if env_errors:
        raise ConfigError(env_errors)
    env = {k.upper(): k for k in os.environ if k.upper().startswith(ENV_PREFIX)}
    unknown = unknown_env_errors(env.values())
    try:
        settings = Settings(**data)
    except SettingsError as exc:
        raise ConfigError([*unknown, _env_parse_error(str(exc), env)]) from None
    except ValidationError as exc:
        errors: list[str] = list(unknown)
        field_errors = False
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
            if not loc:  # the cross-field checks: one error per line, each with its path
                errors += msg.split("\n")
                continue
            field_errors = True
            if len(loc) >= 2 and loc[-1] == "[key]":  # a bad mapping key, not its value
                loc, msg = loc[:-2], f"key {loc[-2]!r}: {msg}"
            var = _env_var(loc, env)
            where = yaml_path(loc) + (f" (environment variable {var})" if var else "")
            errors.append(f"{where}: {msg}")
        if field_errors:
            # The model's cross-field checks did not run; run them on the raw data.
            sections = {name.removeprefix(ENV_PREFIX).lower() for name in env if "__" not in name}
            errors += [e for e in raw_reference_errors(data, sections) if e not in errors]
        raise ConfigError(errors) from None
    if unknown:
        raise ConfigError(unknown)
    return settings


# `LLM_ONCALL_*` variables that are not settings: who reads each. Every other variable with
# the prefix must name a setting (see `unknown_env_errors`).
NOT_SETTINGS_ENV = {
    "LLM_ONCALL_TOKEN": "the client commands' API token (daemon/client.py)",
    "LLM_ONCALL_URL": "the client commands' daemon URL (daemon/client.py)",
    "LLM_ONCALL_INGEST_TOKEN": "the OpenTelemetry Collector's token (deploy/otel-collector.yaml)",
    "LLM_ONCALL_FUZZ_EXAMPLES": "examples per fuzz test (tests/fuzz)",
    "LLM_ONCALL_TEST_ARTIFACTS": "where browser tests put screenshots (tests/e2e)",
}


def unknown_env_errors(names: Iterable[str]) -> list[str]:
    """One error per `LLM_ONCALL_*` variable that names no setting.

    The model rejects an unknown key below a known section (`LLM_ONCALL_LISTEN__PROT`), but
    pydantic-settings only looks up the variables of fields it has, so a typo in the section
    itself (`LLM_ONCALL_CORRELATON__WINDOW_S`) would be ignored and the default used in
    silence, as a YAML typo never is (`extra="forbid"`). The prefix is ours: a variable with it
    is a setting, or one of `NOT_SETTINGS_ENV`.
    """
    sections = Settings.model_fields
    paths = list(sections)
    for section, info in sections.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            paths += [f"{section}__{key}" for key in info.annotation.model_fields]
    errors = []
    for name in sorted(names):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_SETTINGS_ENV:
            continue
        rest = upper[len(ENV_PREFIX) :].lower()
        if rest.split("__")[0] in sections:
            continue
        ends = [p for p in paths if p.endswith("__" + rest)]
        close = ends or difflib.get_close_matches(rest, paths, n=1, cutoff=0.6)
        if not close and "__" in rest:
            # A typo in the section of a nested name: suggest the section, keep the rest.
            section, _, tail = rest.partition("__")
            near = difflib.get_close_matches(section, list(sections), n=1, cutoff=0.6)
            close = [f"{near[0]}__{tail}"] if near else []
        hint = f"; did you mean {ENV_PREFIX}{close[0].upper()}?" if close else ""
        errors.append(f"{name}: environment variable names no setting{hint}")
    return errors


def _resolve_files(data: dict[str, Any], base: Path) -> None:
    """Make the file's relative `*_file` paths (ingest.token_file, api.read_token_file,
    receivers[i].*_file) relative to the config file's folder. Absolute paths and `~` are
    left as written."""
    sections = [data.get("ingest"), data.get("api"), *(data.get("receivers") or [])]
    for section in sections:
        if not isinstance(section, dict):
            continue
        for key, value in section.items():
            if (
                isinstance(key, str)
                and key.endswith("_file")
                and isinstance(value, str)
                and value
                and not value.startswith("~")
                and not Path(value).is_absolute()
            ):
                section[key] = str(base / value)


def _env_var(loc: tuple[int | str, ...], env: dict[str, str]) -> str | None:
    """The environment variable a value at `loc` came from, if one is set: the longest of
    LLM_ONCALL_LISTEN__PORT, LLM_ONCALL_LISTEN (a JSON object) that exists."""
    parts = [str(p) for p in loc]
    for k in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(parts[:k]).upper()
        if name in env:
            return env[name]
    return None


def _env_parse_error(message: str, env: dict[str, str]) -> str:
    """pydantic-settings' 'error parsing value for field "listen" from source
    "EnvSettingsSource"' as a line naming the variable and what it should hold."""
    match = re.search(r'field "([^"]+)"', message)
    field = match.group(1) if match else None
    var = _env_var((field,), env) if field else None
    if field is None or var is None:
        return f"environment: {message}"
    return (
        f"{field} (environment variable {var}): not valid JSON; a nested setting takes a JSON"
        f" value, or set its keys one by one ({ENV_PREFIX}{field.upper()}__<KEY>=...)"
    )


def _is_union_tag(part: int | str) -> bool:
    # Discriminated unions add the tag ("pagerduty", "function-after[...]") to the location.
    return isinstance(part, str) and (part.startswith("function-") or part in _RECEIVER_TYPES)


_RECEIVER_TYPES = {"pagerduty", "opsgenie", "slack", "webhook", "log"}
