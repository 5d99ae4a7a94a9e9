"""Delivery worker: drains the outbox into receivers, reliably.

- Order per (receiver, dedup_key): the outbox only offers the head row of each pair, so a
  resolve waits for its trigger (even through the trigger's retries); different incidents
  and receivers go out concurrently (up to `concurrency` requests at once).
- Retries: exponential backoff with full jitter, `sleep = uniform(0, min(cap, base·2^n))`
  (AWS Architecture Blog, "Exponential Backoff And Jitter"); a `Retry-After` from the
  receiver replaces the jittered delay, and a 429 pauses the whole receiver that long.
- Rate limit: a token bucket per receiver (PagerDuty: ~120 events/min per routing key).
  The 429 pause is the worker's own, per receiver name, apart from the buckets: webhook and
  Opsgenie receivers have no bucket by default and must still be paused.
- Recovery: the first success after failures makes the receiver's rows that sleep in
  backoff due at once, so a 5-minute outage does not turn into 5 more minutes of trickle.
- Dead letters: 4xx other than 408/429, `max_attempts` (if set), or older than `max_age_s`.
  A dead row whose route named a fallback moves (with its later rows) to the fallback.
- Time: `clock` stamps rows and decides what is due; `sleep` waits for the next due row
  when nothing is in flight, so tests drive hours of backoff in milliseconds. Waiting for
  in-flight requests or new rows uses the event loop (`outbox.notify()` wakes the worker).
- Lifecycle: `start()` / `stop()` own one background task; or `run(stop_event)` under a task
  the caller owns. On stop, requests in flight get a short grace, then are cancelled and
  their rows released (pending again). `drain(timeout)` delivers what is pending first.
- Logs name the receiver, the incident and the reason; never a key or a Slack URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from config.receivers import NotifyConfig
from daemon.notify.http import Sender
from daemon.notify.metrics import NotifyMetrics
from daemon.notify.model import DeliveryResult
from daemon.notify.outbox import Outbox, OutboxBusy, OutboxRow
from daemon.notify.ratelimit import TokenBucket

__all__ = ["DeliveryWorker"]

T = TypeVar("T")
_BUSY_RETRY_S = 0.02
_PRUNE_EVERY_S = 3600.0


class DeliveryWorker:
    def __init__(
        self,
        outbox: Outbox,
        senders: Mapping[str, Sender],
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random,
        metrics: NotifyMetrics,
        log: Any,
        *,
        config: NotifyConfig | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.outbox = outbox
        self.senders = dict(senders)
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.metrics = metrics
        self.log = log
        self.config = config or NotifyConfig()
        self._session = session
        self._buckets = {
            name: TokenBucket(s.rate_limit_per_min, clock)
            for name, s in self.senders.items()
            if s.rate_limit_per_min
        }
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._running = False
        self._last_prune = float("-inf")
        self._timed_wait = False
        self._failing: set[str] = set()  # receivers whose last attempt asked for a retry
        self._paused_until: dict[str, float] = {}  # receiver → end of its 429 Retry-After

    def reconfigure(self, senders: Mapping[str, Sender], config: NotifyConfig) -> None:
        """Receivers and delivery settings from a config reload, between two deliveries.

        Rows already in the outbox keep their receiver name: a receiver that left the config
        makes its pending rows dead letters (named in /metrics), as after a restart. A
        receiver whose rate limit is unchanged keeps its token bucket, so a reload cannot be
        used to burst past a receiver's limit; deliveries in flight finish on the old sender.
        """
        buckets: dict[str, TokenBucket] = {}
        for name, sender in senders.items():
            if not sender.rate_limit_per_min:
                continue
            old = self._buckets.get(name)
            same = old is not None and old.rate == sender.rate_limit_per_min / 60.0
            buckets[name] = (
                old
                if same and old is not None
                else TokenBucket(sender.rate_limit_per_min, self.clock)
            )
        self.senders = dict(senders)
        self._buckets = buckets
        self.config = config
        self._failing &= set(senders)
        # A reload must not lift a pause the receiver asked for.
        self._paused_until = {n: t for n, t in self._paused_until.items() if n in senders}

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Run in a background task owned by this worker (stop with `stop()`)."""
        if self._task is not None and not self._task.done():
            return
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stop), name="notify-delivery-worker")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The running delivery task (None before `start` and after `stop`)."""
        return self._task

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Idempotent: signal the loop, wait up to `timeout`, then cancel and await."""
        task, self._task = self._task, None
        if task is None:
            return
        if self._stop is not None:
            self._stop.set()
        self.outbox.notify()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def drain(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Deliver until nothing is pending or in flight, or `timeout` seconds pass (event
        loop time). Rows waiting in backoff are waited for. Returns True when empty."""
        own = not self._running
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop), name="notify-drain") if own else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                if self.outbox.unfinished_count() == 0 and not self._inflight:
                    return True
                if loop.time() >= deadline or (task is not None and task.done()):
                    return False
                await asyncio.sleep(0.01)
        finally:
            if task is not None:
                stop.set()
                self.outbox.notify()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def run(self, stop_event: asyncio.Event) -> None:
        """The delivery loop, until `stop_event` is set (or the task is cancelled)."""
        if self._running:
            raise RuntimeError("DeliveryWorker.run is already running")
        self._running = True
        session = self._session or aiohttp.ClientSession()
        try:
            recovered = await self._db(self.outbox.requeue_inflight)
            if recovered:
                self.log.info("outbox rows requeued after restart", rows=recovered)
            while not stop_event.is_set():
                wait = await self._tick(session)
                await self._wait(stop_event, wait)
        finally:
            try:
                await self._finish_inflight(grace=min(self.config.timeout_s, 5.0))
            finally:
                if self._session is None:
                    await session.close()
                self._running = False

    async def _wait(self, stop_event: asyncio.Event, delay: float) -> None:
        wakeup = self.outbox.wakeup_event
        if wakeup.is_set() or stop_event.is_set():
            wakeup.clear()
            return
        if delay <= 0:
            await asyncio.sleep(0)
            return
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(wakeup.wait()),
            asyncio.ensure_future(stop_event.wait()),
        }
        delay = min(delay, self.config.poll_interval_s)
        if self._timed_wait and not self._inflight:
            # Waiting for a known due time (backoff, Retry-After, rate limit): injected sleep.
            timer: asyncio.Future[Any] = asyncio.ensure_future(self.sleep(delay))
        else:
            # Waiting for in-flight requests or new rows: they wake us; poll as a safety net.
            timer = asyncio.ensure_future(asyncio.sleep(delay))
        waiters.add(timer)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        wakeup.clear()

    async def _finish_inflight(self, grace: float) -> None:
        tasks = list(self._inflight.values())
        if not tasks:
            return
        try:
            await asyncio.wait(tasks, timeout=grace)
        finally:  # also when stop() cancels us during the grace period
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an outbox write, waiting while the shared connection is in someone else's
        transaction (which only happens if a caller awaits mid-transaction)."""
        while True:
            try:
                return fn(*args)
            except OutboxBusy:
                await asyncio.sleep(_BUSY_RETRY_S)

    # -- one pass -------------------------------------------------------------------------

    async def _tick(self, session: aiohttp.ClientSession) -> float:
        """Claim what is due and start delivering it; return how long to wait."""
        now = self.clock()
        wait = self.config.poll_interval_s
        self._timed_wait = False
        try:
            self._refresh_gauges(now)
            if now - self._last_prune > _PRUNE_EVERY_S and self.config.keep_sent_s > 0:
                self.outbox.prune(now - self.config.keep_sent_s)
                self._last_prune = now
            free = self.config.concurrency - len(self._inflight)
            claimed: list[OutboxRow] = []
            held: set[str] = set()  # receivers with due rows held back by their bucket
            if free > 0:
                names = {*self._buckets, *self._paused_until}  # a copy: _hold_time prunes
                blocked = {n for n in names if self._hold_time(n, now) > 0}
                chosen: list[int] = []
                for row in self.outbox.eligible(now, limit=free * 4 + 16):
                    if len(chosen) >= free:
                        break
                    if row.receiver in blocked:
                        held.add(row.receiver)
                        continue
                    rb = self._buckets.get(row.receiver)
                    if rb is not None and not rb.try_take():
                        blocked.add(row.receiver)
                        held.add(row.receiver)
                        continue
                    chosen.append(row.id)
                claimed = self.outbox.claim(chosen)
                for row in claimed:
                    task = asyncio.create_task(self._deliver(session, row))
                    self._inflight[row.id] = task
                    task.add_done_callback(self._done_callback(row.id))
            if claimed and len(self._inflight) < self.config.concurrency:
                return 0.0  # there may be more due rows
            for name in held:  # due rows held back by a rate limit or a 429 pause
                wait = min(wait, self._hold_time(name, now))
                self._timed_wait = True
            due = self.outbox.next_due_at()
            if due is not None and due > now:
                wait = min(wait, due - now)
                self._timed_wait = True
        except OutboxBusy:
            return _BUSY_RETRY_S
        return wait

    def _hold_time(self, receiver: str, now: float) -> float:
        """Seconds before `receiver` may be sent to: its 429 pause, then its rate limit."""
        until = self._paused_until.get(receiver)
        if until is not None and until <= now:
            del self._paused_until[receiver]  # bounded by the receivers that said 429
            until = None
        bucket = self._buckets.get(receiver)
        return max(
            0.0 if until is None else until - now,
            0.0 if bucket is None else bucket.wait_time(),
        )

    def _done_callback(self, row_id: int) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self._inflight.pop(row_id, None)
            self.outbox.notify()

        return done

    def _refresh_gauges(self, now: float) -> None:
        oldest = self.outbox.oldest_pending_created_at()
        self.metrics.set_outbox(
            self.outbox.depth_by_receiver(),
            self.senders.keys(),
            (now - oldest) if oldest is not None else None,
        )

    # -- one delivery ---------------------------------------------------------------------

    async def _deliver(self, session: aiohttp.ClientSession, row: OutboxRow) -> None:
        try:
            await self._deliver_row(session, row)
        except asyncio.CancelledError:
            # Shutdown mid-request: the row goes back to pending; the next start resends it
            # (at-least-once; the receiver's dedup key absorbs a duplicate).
            with contextlib.suppress(OutboxBusy):
                self.outbox.release(row.id)
            raise

    async def _deliver_row(self, session: aiohttp.ClientSession, row: OutboxRow) -> None:
        cfg = self.config
        now = self.clock()
        if now - row.created_at > cfg.max_age_s:
            self.metrics.attempts.labels(receiver=row.receiver, outcome="expired").inc()
            await self._dead(row, f"expired: not delivered within max_age_s={cfg.max_age_s:g}", now)
            return
        sender = self.senders.get(row.receiver)
        if sender is None:
            await self._dead(row, f"no receiver named {row.receiver!r} is configured", now)
            return
        try:
            n = row.notification()
        except (ValueError, KeyError, TypeError) as exc:
            await self._dead(row, f"unreadable outbox payload: {type(exc).__name__}", now)
            return
        # Senders bound their own requests; this outer bound also covers Opsgenie's polls.
        try:
            async with asyncio.timeout(cfg.timeout_s * 6):
                result = await sender.send(session, n)
        except TimeoutError:
            result = DeliveryResult(ok=False, retry=True, error="timeout")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a sender bug must not kill the worker; no message: secrets
            result = DeliveryResult(
                ok=False, retry=True, error=f"sender error {type(exc).__name__}"
            )
        await self._record(row, result)

    async def _record(self, row: OutboxRow, res: DeliveryResult) -> None:
        cfg = self.config
        now = self.clock()
        self.metrics.attempts.labels(receiver=row.receiver, outcome=_outcome(res)).inc()
        if res.ok:
            await self._db(self.outbox.mark_sent, row.id, now)
            if row.receiver in self._failing:
                # Recovered: rows sleeping in backoff go now (the rate limit still paces
                # them) instead of trickling in over the next max_backoff_s.
                self._failing.discard(row.receiver)
                await self._db(self.outbox.expedite, row.receiver, now)
            self.metrics.notifications.labels(row.receiver, row.action, "sent").inc()
            self.metrics.delivery_seconds.labels(receiver=row.receiver).observe(
                max(0.0, now - row.created_at)
            )
            self.log.info(
                "notification sent",
                receiver=row.receiver,
                incident_id=row.incident_id,
                action=row.action,
                attempts=row.attempts,
                status=res.status,
            )
            return
        error = res.error or "failed"
        if not res.retry:
            await self._dead(row, error, now)
            return
        if cfg.max_attempts is not None and row.attempts >= cfg.max_attempts:
            await self._dead(row, f"gave up after {row.attempts} attempts: {error}", now)
            return
        if res.retry_after is not None:
            delay = min(res.retry_after, cfg.max_retry_after_s)
            if res.status == 429:
                # Every kind of receiver, with or without a rate limit: the receiver said
                # it takes nothing for `delay`, so its other rows wait too.
                until = now + delay
                self._paused_until[row.receiver] = max(
                    until, self._paused_until.get(row.receiver, until)
                )
        else:
            cap = min(cfg.max_backoff_s, cfg.base_backoff_s * 2.0 ** min(row.attempts - 1, 62))
            delay = self.rng.uniform(0.0, cap)
        next_at = now + delay
        if next_at - row.created_at > cfg.max_age_s:
            await self._dead(row, f"expired: retry would pass max_age_s; last error: {error}", now)
            return
        self._failing.add(row.receiver)
        first = await self._db(self.outbox.mark_retry, row.id, next_at, error)
        if first:
            self.metrics.notifications.labels(row.receiver, row.action, "retried").inc()
        self.log.warning(
            "notification retry",
            receiver=row.receiver,
            incident_id=row.incident_id,
            action=row.action,
            attempts=row.attempts,
            retry_in_s=round(delay, 3),
            error=error,
        )

    async def _dead(self, row: OutboxRow, reason: str, now: float) -> None:
        moved = await self._db(self.outbox.mark_dead, row, reason, now)
        self.metrics.notifications.labels(row.receiver, row.action, "dead").inc()
        for r in moved:
            if r.id != row.id:
                self.metrics.notifications.labels(r.receiver, r.action, "dead").inc()
        self.log.error(
            "notification dead letter",
            receiver=row.receiver,
            incident_id=row.incident_id,
            dedup_key=row.dedup_key,
            action=row.action,
            attempts=row.attempts,
            reason=reason,
            fallback=row.fallback if moved else None,
        )


def _outcome(res: DeliveryResult) -> str:
    if res.ok:
        return "ok"
    if res.status == 429:
        return "rate_limited"
    if res.retry and res.status is None:
        return "timeout" if res.error and "timeout" in res.error else "network"
    return "retry" if res.retry else "rejected"
