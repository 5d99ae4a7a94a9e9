"""Static threshold: the infra layer's detector.

Infra metrics (latency, throughput, error rate, cost) have meaningful absolute limits set by
SLOs and budgets, so a fixed line is the honest detector for them. `for_s` keeps one slow
tick from firing (Prometheus' `for:`), and a separate clear level gives hysteresis so a
value hovering at the line does not flap.

Default budgets are guesses. A default line (p95 above 10 s) that a feature's normal
traffic crosses every day is not a budget for that feature: a workload of long generations
lives above it, and the line fired tens of times a feature-week on such evaluation worlds,
saying nothing. So a default rule is built with `arm_s`: for its first `arm_s` seconds of
data it only watches, keeping the worst value seen; if that value reached the clear level,
the line sits inside the feature's normal range and the rule disarms for good (`disarmed`
says why, and the daemon logs it and exports `llm_oncall_detector_disarmed`), else it arms.
A configured rule (the operator's own budget) has `arm_s` 0 and is armed from the start.
Relative regressions are the `logmean` detectors' job either way.
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
        arm_s: float = 0.0,
    ) -> None:
        if not math.isfinite(threshold):
            raise ValueError("threshold must be finite")
        if op not in ("above", "below"):
            raise ValueError(f"op must be 'above' or 'below', got {op!r}")
        if for_s < 0:
            raise ValueError("for_s must be >= 0")
        if min_n < 0:
            raise ValueError("min_n must be >= 0")
        if not (arm_s >= 0 and math.isfinite(arm_s)):
            raise ValueError("arm_s must be >= 0 seconds")
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
        self.arm_s = float(arm_s)
        self._firing = False
        self._pending_since: float | None = None
        self._arm_from: float | None = None  # first sample while arming
        self._worst: float | None = None  # worst value while arming
        self._armed = self.arm_s == 0.0
        self._disarmed = False

    @property
    def disarmed(self) -> str | None:
        """Why this default line never fires, or None while it may."""
        if not self._disarmed:
            return None
        return (
            f"default line {self.op} {self.threshold:g} is inside this series' normal range: "
            f"its first {self.arm_s / 3600:g} h reached {self._worst:g} (clear level "
            f"{self.clear:g}); set a budget in the config"
        )

    def _arming(self, ts: float, value: float) -> bool:
        """Watch while arming; True until the rule is armed (or for good once disarmed)."""
        if self._armed:
            return False
        if self._disarmed:
            return True
        if self._arm_from is None:
            self._arm_from = ts
        if ts - self._arm_from < self.arm_s:
            worst = self._worst
            if worst is None or (value > worst if self.op == "above" else value < worst):
                self._worst = value
            return True
        # The first sample past the arming period is judged as an armed rule would.
        worst = self._worst
        if worst is None or (self._clears(worst) and worst != self.clear):
            self._armed = True
            return False
        self._disarmed = True
        return True

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
        if self._arming(ts, value):
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
            "v": 2,
            "kind": self.kind,
            "threshold": self.threshold,
            "op": self.op,
            "for_s": self.for_s,
            "clear": self.clear,
            "min_n": self.min_n,
            "firing": self._firing,
            "pending_since": self._pending_since,
            "arm_s": self.arm_s,
            "arm_from": self._arm_from,
            "worst": self._worst,
            "armed": self._armed,
            "disarmed": self._disarmed,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        if state.get("v") not in (1, 2):
            raise ValueError(
                f"cannot load 'static' detector state version {state.get('v')!r} "
                "(this build reads v1 and v2); start the series fresh"
            )
        det = cls(
            state["threshold"], state["op"], state["for_s"], state["clear"], state["min_n"],
            float(state.get("arm_s", 0.0)),
        )  # fmt: skip
        det._firing = bool(state["firing"])
        det._pending_since = state["pending_since"]
        if state["v"] == 1:  # before arming: a v1 line was armed
            det._armed = True
            return det
        det._arm_from = state["arm_from"]
        det._worst = state["worst"]
        det._armed = bool(state["armed"])
        det._disarmed = bool(state["disarmed"])
        return det
