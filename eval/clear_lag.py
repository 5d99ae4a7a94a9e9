"""How long after a fault ends each member of its incident clears: the drain a manual resolve's
grace must cover (docs/oncall.md, "Resolved while still firing").

    python eval/clear_lag.py

Replays the scenario faults of `tests/scenarios/traffic.py` (one feature, 16 h warm-up, fault
at 16:00 UTC on a Tuesday, embedded defaults) and prints, per member signal of each incident
opened by the fault, the minutes from the fault's end to the member's clear. A person who
resolves at the rollback would be re-paged by any member whose lag exceeds the grace.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from correlator.records import rfc3339
from tests.scenarios import traffic as T

FAULTS = (
    ("prompt_regression", 90),
    ("provider_outage", 30),
    ("silent_model_update", 90),
    ("retrieval_drift", 60),
)


def main() -> int:
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for kind, minutes in FAULTS:
            path = T.write_scenario(Path(tmp) / f"{kind}.jsonl", [T.injection(kind, 0, minutes)])
            end = T.FAULT_AT + minutes * 60.0
            for rec in T.run(path).incidents:
                if rec["opened_at"] < rfc3339(T.FAULT_AT):
                    continue  # the warm-up's watch incidents
                for s in rec["signals"]:
                    name = s["metric"] + (f"{{{s['series']}}}" if s.get("series") else "")
                    if s["cleared"] is None:
                        print(f"{kind:20} {name:40} {s['detector']:9} still firing at the end")
                        continue
                    lag = (datetime.fromisoformat(s["cleared"]).timestamp() - end) / 60.0
                    worst = max(worst, lag)
                    print(f"{kind:20} {name:40} {s['detector']:9} cleared {lag:5.1f} min after")
    print(f"slowest clear: {worst:.1f} min after its fault ended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
