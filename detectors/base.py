"""Records and the protocol every detector follows.

Detectors are small stateful estimators (after river's detectors): O(1) memory, time as an
argument, state that round-trips through plain JSON-able dicts so the daemon can snapshot it
to SQLite and replay can resume from it. Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol, Self, runtime_checkable

Layer = Literal["infra", "api", "behavioral", "quality"]
LAYERS: tuple[Layer, ...] = ("infra", "api", "behavioral", "quality")


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class TickStats:
    """What arrived for one series since the previous tick (not the trailing window).

    Evidence detectors (`binomial`, `logmean`) add these up over windows of their own, so
    each call counts once, whereas the aggregator's 5-minute windows overlap and count every
    call in ~20 consecutive samples. For a k-of-n metric `k` is the numerator of the metric's
    k/n (failures for error rates, successes for availability) and `n` the trials. For a
    per-call quantity: `n` calls and the sums of y, y^2 and y^3 over them, y = log1p(value)
    of each call (the cube lets the detector correct its test for skew).
    """

    n: int
    k: int = 0
    log_sum: float = 0.0
    log_sq: float = 0.0
    log_cube: float = 0.0


@dataclass(frozen=True, slots=True)
class ScoreObs:
    """The observations of one quality score that arrived during one tick, for the fused
    quality verdict: each value is one observation (a judge score, a user's thumbs as 0/1, or
    the mean of one golden run), `higher_is_better` is the score's configured direction."""

    name: str
    values: tuple[float, ...]
    higher_is_better: bool = True


@dataclass(frozen=True, slots=True)
class Sample:
    """One evaluated value of one series at one tick (or one `metric` event).

    `n` is the number of observations behind `value` (calls in the window, scores in the
    window); rate detectors read `value` as k/n, so `n` is what makes 3/5 differ from 60/100.
    `series` is "" for feature-level metrics and e.g. "provider=openai,model=gpt-4o" for the
    per-provider availability series. `tick` (optional) carries the per-tick increments
    behind the window for detectors that accumulate evidence themselves (see `TickStats`).
    `parts` is set on the fused `quality` sample only:
    the tick's new score observations per score name (`ScoreObs`); detectors with an
    `observe(ts, parts)` method read them, others see `value` (the observation count).
    """

    ts: float
    feature: str
    layer: Layer
    metric: str
    value: float
    n: int | None = None
    series: str = ""
    tick: TickStats | None = None
    parts: tuple[ScoreObs, ...] | None = None


def split_value(series: str, labels: Collection[str]) -> tuple[str, str] | None:
    """(label, value) when `series` is one value of a label in `labels` (`segment=pro`, a
    split series: aggregation.split_labels), else None: the feature itself (""), or a
    provider/model/endpoint availability series."""
    label, sep, value = series.partition("=")
    return (label, value) if sep and label in labels else None


@dataclass(frozen=True, slots=True)
class Transition:
    """A detector changed state. Carries what the contract signal record needs."""

    ts: float
    state: Literal["firing", "cleared"]
    value: float
    baseline: float | None
    score: float
    direction: Direction


@runtime_checkable
class Detector(Protocol):
    """What the pipeline needs from a detector.

    `update` learns from and scores one observation and returns a `Transition` only when the
    firing state changes; `tick` is the sample's per-tick increments, which only the
    evidence detectors read (the others judge the window value). `kind` is the contract
    `detector` field ("static", "ewma", ...).
    """

    kind: ClassVar[str]

    @property
    def firing(self) -> bool: ...

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None: ...

    def to_state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self: ...
