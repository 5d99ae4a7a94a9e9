"""Pages per fault and the price of the group wait, on a few evaluation worlds (issue 13).

    python eval/pages_eval.py --seeds 1001 1002 --days 14      # ~1-3 min per world, one core
    python eval/pages_eval.py --seeds 1001 --keep /tmp/pages    # keep the replay's output

Each world is generated and replayed exactly as `eval/worlds_eval.py` does (same `run_world`,
embedded defaults), then read for what an on-call engineer feels:
- pages per fault: for each must-page fault, the distinct incidents (dedup keys, so distinct
  pages at the receiver) that notified inside [start, end + 30 min] on its feature. The target
  is exactly 1. Escalations and reopens re-send the same dedup key and so update that page;
  they are counted apart as "updates".
- first signal → first notification: per notified incident, the time from its earliest
  member signal's onset to its first notification (what the group wait costs).
The full worlds suite is heavier; this reads 2-4 worlds, enough for the figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.worlds import draw_world  # noqa: E402
from eval.worlds_eval import SLACK_S, _ts, run_world  # noqa: E402


def pages_per_fault(
    seed: int, days: float, features: int, keep: str, rescore: bool = False
) -> dict[str, Any]:
    run_world(seed, days, features, keep, rescore=rescore)
    world = draw_world(seed, days, features)
    path = Path(keep) / f"world{seed}.incidents.jsonl"
    incidents = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    faults = []
    for t in world.truth:
        if not t.must_page:
            continue
        lo, hi = t.start, t.end + SLACK_S
        paged = [
            r
            for r in incidents
            if r["feature"] == t.feature
            and any(lo <= _ts(when) <= hi for when, _ in r.get("notifications", []))
        ]
        notes = sum(
            1 for r in paged for when, _ in r.get("notifications", []) if lo <= _ts(when) <= hi
        )
        faults.append(
            {"kind": t.kind, "pages": len({r["dedup_key"] for r in paged}), "notifications": notes}
        )
    delays, quick = [], 0
    for r in incidents:
        notes = r.get("notifications") or []
        if notes and r.get("signals"):
            first_signal = min(_ts(s["onset"]) for s in r["signals"])
            delays.append(_ts(notes[0][0]) - first_signal)
            # The double page: a second notification (an escalation) within a minute
            # of the first, i.e. signals that co-occurred but paged one after the other.
            quick += sum(1 for when, _ in notes[1:] if _ts(when) - _ts(notes[0][0]) < 60)
    return {"seed": seed, "faults": faults, "delays": delays, "quick": quick}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1001, 1002])
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--features", type=int, default=2)
    ap.add_argument("--keep", help="directory for the replays' output (default: a temp dir)")
    ap.add_argument("--rescore", action="store_true", help="read an earlier --keep, no replay")
    args = ap.parse_args()
    keep = args.keep or tempfile.mkdtemp(prefix="pages-eval-")
    Path(keep).mkdir(parents=True, exist_ok=True)
    faults: list[dict[str, Any]] = []
    delays: list[float] = []
    quick = 0
    for seed in args.seeds:
        res = pages_per_fault(seed, args.days, args.features, keep, args.rescore)
        faults += res["faults"]
        delays += res["delays"]
        quick += res["quick"]
        per = [f["pages"] for f in res["faults"]]
        print(f"world {seed}: pages per must-page fault {per}", flush=True)
    paged = [f for f in faults if f["pages"]]
    exactly_one = sum(1 for f in paged if f["pages"] == 1)
    updates = sum(f["notifications"] - f["pages"] for f in paged)
    print(f"must-page faults: {len(faults)}; paged: {len(paged)}; exactly one page: {exactly_one};"
          f" more than one: {len(paged) - exactly_one}; updates (escalation, reopen) on the same"
          f" page: {updates}")  # fmt: skip
    if paged:
        print(f"pages per paged fault: mean {statistics.mean(f['pages'] for f in paged):.2f},"
              f" max {max(f['pages'] for f in paged)}")  # fmt: skip
    print(f"second notifications within 60 s of an incident's first (double pages): {quick}")
    if delays:
        q = statistics.quantiles(delays, n=10) if len(delays) > 1 else [delays[0]] * 9
        print(f"first signal -> first notification over {len(delays)} notified incidents: "
              f"median {statistics.median(delays):.0f} s, p90 {q[8]:.0f} s, "
              f"max {max(delays):.0f} s")  # fmt: skip
        prompt = [x for x in delays if x < 300]
        if prompt:
            print(f"  of which paged within 5 min of the first signal ({len(prompt)}): median "
                  f"{statistics.median(prompt):.0f} s, max {max(prompt):.0f} s"
                  " (the rest paged when a later signal escalated them)")  # fmt: skip


if __name__ == "__main__":
    main()
