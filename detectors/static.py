"""Static threshold: the infra layer's detector.

Infra metrics (latency, throughput, error rate, cost) have meaningful absolute limits set by
SLOs and budgets, so a fixed line is the honest detector for them. `for_s` keeps one slow
tick from firing (Prometheus' `for:`), and a separate clear level gives hysteresis so a
value hovering at the line does not flap.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, Self

from detectors.base import Direction, TickStats, Transition

Op = Literal["above", "below"]


class StaticThreshold:
    kind: ClassVar[str] = "static"

    def __init__(
        self,
        threshold: float,
        op: Op = "above",
        for_s: float = 0.0,
        clear: float | None = None,
        min_n: int = 1,
    ) -> None:
        if not math.isfinite(threshold):
            raise ValueError("threshold must be finite")
        if op not in ("above", "below"):
            raise ValueError(f"op must be 'above' or 'below', got {op!r}")
        if for_s < 0:
            raise ValueError("for_s must be >= 0")
        if min_n < 0:
            raise ValueError("min_n must be >= 0")
        clear_level = threshold if clear is None else clear
        if op == "above" and clear_level > threshold:
            raise ValueError("clear level must be <= threshold for op 'above'")
        if op == "below" and clear_level < threshold:
            raise ValueError("clear level must be >= threshold for op 'below'")
        self.threshold = float(threshold)
        self.op: Op = op
        self.for_s = float(for_s)
        self.clear = float(clear_level)
        self.min_n = min_n
        self._firing = False
        self._pending_since: float | None = None

    @property
    def firing(self) -> bool:
        return self._firing

    @property
    def baseline(self) -> float:
        return self.threshold

    def _breaches(self, value: float) -> bool:
        return value > self.threshold if self.op == "above" else value < self.threshold

    def _clears(self, value: float) -> bool:
        return value <= self.clear if self.op == "above" else value >= self.clear

    def _score(self, value: float) -> float:
        """How far past the line, relative to it (0.5 = 50% over an `above` threshold)."""
        scale = abs(self.threshold) or 1.0
        delta = value - self.threshold if self.op == "above" else self.threshold - value
        return round(delta / scale, 6)

    def update(
        self, ts: float, value: float, n: int | None = None, tick: TickStats | None = None
    ) -> Transition | None:
        if n is not None and n < self.min_n:
            # Too few observations to say anything; keep the current state.
            return None
        direction = Direction.UP if self.op == "above" else Direction.DOWN
        if not self._firing:
            if not self._breaches(value):
                self._pending_since = None
                return None
            if self._pending_since is None:
                self._pending_since = ts
            if ts - self._pending_since >= self.for_s:
                self._firing = True
                self._pending_since = None
                return Transition(
                    ts, "firing", value, self.threshold, self._score(value), direction
                )
            return None
        if self._clears(value):
            self._firing = False
            return Transition(ts, "cleared", value, self.threshold, self._score(value), direction)
        return None

    def to_state(self) -> dict[str, Any]:
        return {
            "v": 1,
            "kind": self.kind,
            "threshold": self.threshold,
            "op": self.op,
            "for_s": self.for_s,
            "clear": self.clear,
            "min_n": self.min_n,
            "firing": self._firing,
            "pending_since": self._pending_since,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        if state.get("v") != 1:
            raise ValueError(
                f"cannot load 'static' detector state version {state.get('v')!r} "
                "(this build reads v1); start the series fresh"
            )
        det = cls(state["threshold"], state["op"], state["for_s"], state["clear"], state["min_n"])
        det._firing = bool(state["firing"])
        det._pending_since = state["pending_since"]
        return det
