"""Per-receiver token bucket, on the injected clock."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """`rate_per_min` tokens a minute, bursts up to `burst`. PagerDuty counts ~120 events in
    a trailing 60 s window per routing key; a burst of a quarter of the rate then a steady
    2/s stays under it while letting a handful of pages through at once."""

    def __init__(
        self, rate_per_min: float, clock: Callable[[], float], burst: float | None = None
    ) -> None:
        if rate_per_min <= 0:
            raise ValueError("rate_per_min must be > 0")
        self.rate = rate_per_min / 60.0
        self.capacity = burst if burst is not None else max(1.0, rate_per_min / 4.0)
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def try_take(self) -> bool:
        now = self.clock()
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until a token is available."""
        now = self.clock()
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate
