"""The long version of issue 11's "a flapping series does not hide a provider outage".

    python eval/flap_outage.py [--flap-hours 24] [--outage-at-hours 6]

Latency flaps (5 slow minutes in every 40) for `--flap-hours` after a 16 h warm-up; a
provider outage (35% of calls fail for 30 min) starts `--outage-at-hours` into the flapping.
Replays it through the real pipeline on embedded defaults and prints the incidents; exits 1
unless the outage has its own paged provider incident whose `started_at` is within 5 min of
the outage start. The test suite runs the 8 h version (tests/scenarios/test_onset_attribution.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.scenarios import traffic as T


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flap-hours", type=float, default=24.0)
    ap.add_argument("--outage-at-hours", type=float, default=6.0)
    args = ap.parse_args()
    start = T.FAULT_AT
    flap = T.flapping_slow_calls(start, start + args.flap_hours * 3600, 300, 2400, 15_000.0)
    outage = T.injection("provider_outage", args.outage_at_hours * 60, 30)
    with tempfile.TemporaryDirectory() as tmp:
        path = T.write_scenario(
            Path(tmp) / "flap_outage.jsonl",
            [outage],
            hours=T.WARMUP_H + args.flap_hours + 0.5,
            transforms=[flap],
        )
        records = T.run(path).incidents
    print(T.describe(records))
    hits = [
        r
        for r in records
        if r["domain"] == "provider"
        and r["paged"]
        and abs(datetime.fromisoformat(r["started_at"]).timestamp() - outage.start) <= 300
    ]
    flapping = [r for r in records if r.get("flapping")]
    print(f"flapping incidents: {len(flapping)}; outage incidents paged on time: {len(hits)}")
    return 0 if len(hits) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
