"""The correlator: signals → incidents (grouping, severity, triage, attribution, change
correlation, lifecycle, muting). Pure and deterministic; see docs/correlator.md."""

from correlator.attribution import attribute
from correlator.changes import ChangeDrop
from correlator.correlator import ContextFn, Correlator, CorrelatorStats
from correlator.families import Family, resolve_family
from correlator.incident import (
    Action,
    Attribution,
    ChangeRef,
    Domain,
    HumanAction,
    Incident,
    IncidentUpdate,
    MemberSignal,
    Mute,
    Notify,
    Severity,
    Status,
    TriageAnswer,
)
from correlator.inhibit import InhibitMuter
from correlator.mute import Muter
from correlator.policy import CorrelationPolicy
from correlator.records import (
    ChangeRecord,
    FeatureContext,
    MetricSnapshot,
    Reading,
    Readings,
    Signal,
    rfc3339,
)
from correlator.silences import (
    MAX_API_DURATION_S,
    Matcher,
    Silence,
    SilenceMuter,
    compile_regex,
    load_silences,
)
from correlator.triage import TriageResult, triage

__all__ = [
    "MAX_API_DURATION_S",
    "Action",
    "Attribution",
    "ChangeDrop",
    "ChangeRecord",
    "ChangeRef",
    "ContextFn",
    "CorrelationPolicy",
    "Correlator",
    "CorrelatorStats",
    "Domain",
    "Family",
    "FeatureContext",
    "HumanAction",
    "Incident",
    "IncidentUpdate",
    "InhibitMuter",
    "Matcher",
    "MemberSignal",
    "MetricSnapshot",
    "Mute",
    "Muter",
    "Notify",
    "Reading",
    "Readings",
    "Severity",
    "Signal",
    "Silence",
    "SilenceMuter",
    "Status",
    "TriageAnswer",
    "TriageResult",
    "attribute",
    "compile_regex",
    "load_silences",
    "resolve_family",
    "rfc3339",
    "triage",
]
