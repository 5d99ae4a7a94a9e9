"""A/B of `POST /v1/alertmanager` with a large group: this checkout against another one,
alternating, so a noisy shared machine slows both sides alike.

    python bench/bench_alertmanager_ab.py --base CHECKOUT [--alerts 250 1000] [--repeat 3]

Each run is a fresh process per checkout that starts the daemon in process (its own state
file, `ingest.max_metric_names` raised to admit every alert) and posts, through its HTTP
handler, one webhook of N firing alerts of one feature (10 alert names, one fingerprint each,
started within the last two minutes, in time order); then the same webhook again, as
Alertmanager re-sends a group every `group_interval`; then all of them resolved. It times one
of the three POSTs: "open", "resend" or "resolve". That is the time the event loop is held:
the handler does its work without awaiting. Prints each side's median CPU seconds per
phase and size and the ratio this/base, then per side how the time grows from the smallest
size to the largest (alerts x4 → time x4 when linear, x16 when quadratic). CPU time of the
child process, not wall time: being descheduled on a busy machine does not count.
"""

from __future__ import annotations

import argparse

from child_ab import alternate

CHILD = r"""
import asyncio, logging, sys, tempfile, time
from datetime import UTC, datetime
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import structlog, yaml
from aiohttp.test_utils import TestClient, TestServer
from config.settings import load_settings
from daemon.app import Daemon
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
n, phase = int(sys.argv[2]), sys.argv[3]

def iso(ts):
    return datetime.fromtimestamp(ts, UTC).isoformat()

async def main():
    d = Path(tempfile.mkdtemp())
    cfg = d / "c.yaml"
    cfg.write_text(yaml.safe_dump({"state": {"path": str(d / "state.db")},
                                   "ingest": {"max_metric_names": n, "max_series": max(n, 2000)}}))
    now = float(int(time.time()))
    daemon = Daemon(load_settings(cfg), clock=lambda: now)
    daemon.handle(daemon.pipeline.advance(now))
    firing = [{"status": "firing", "fingerprint": f"fp{i}",
               "labels": {"alertname": f"Alert{i % 10}", "feature": "bot", "instance": f"i{i}"},
               "startsAt": iso(now - 120 + i * 100 / n)} for i in range(n)]
    resolved = [a | {"status": "resolved", "endsAt": iso(now - 10)} for a in firing]
    spent = None
    async with TestClient(TestServer(daemon.build_app())) as client:
        for name, alerts in (("open", firing), ("resend", firing), ("resolve", resolved)):
            t = time.process_time()
            resp = await client.post("/v1/alertmanager", json={"alerts": alerts})
            if name == phase:
                spent = time.process_time() - t
            assert resp.status == 200 and (await resp.json())["accepted"] == n
            if name == phase:
                break
    daemon.store.close()
    print(spent)

asyncio.run(main())
"""

PHASES = ("open", "resend", "resolve")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True, help="the other checkout (e.g. a git worktree)")
    ap.add_argument("--alerts", type=int, nargs="+", default=[250, 1000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--phase", choices=PHASES, nargs="+", default=list(PHASES))
    args = ap.parse_args()
    sizes = sorted(args.alerts)
    for phase in args.phase:
        medians = {}
        for n in sizes:
            print(f"-- {phase}, {n} alerts")
            medians[n] = alternate(CHILD, args.base, [str(n), phase], args.repeat, "s")
        if len(sizes) > 1:
            lo, hi = sizes[0], sizes[-1]
            growth = ", ".join(
                f"{side} x{medians[hi][side] / medians[lo][side]:.1f}" for side in ("base", "this")
            )
            print(f"-- {phase}: alerts x{hi / lo:g} -> time {growth}")


if __name__ == "__main__":
    main()
