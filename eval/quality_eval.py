"""The fused quality verdict on synthetic score streams: false firings per feature-week on
clean traffic and detection delay of quality declines (step and 1-hour ramp).

Streams: tests/detectors/quality_gen.py (worlds' score model: judge scores, 0/1 thumbs and
golden runs). Clean false firings are counted after a 2-day warm-up on 14-day streams; faults
start on day 7 at a seed-dependent hour; a score burst (1-3 judge scores in [0, 0.2] per tick
for one minute) is the decoy, counted when the verdict fires within the hour after it.

    python eval/quality_eval.py            # the table in docs/detectors.md (~2 min)
    python eval/quality_eval.py --quick    # fewer seeds
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.detectors.quality_gen import DAY, T0, Mix, run

MIXES = (
    Mix(0.5, 0.2, 0.02, 30),
    Mix(2.0, 0.2, 0.02, 30),
    Mix(10.0, 0.2, 0.02, 30),
    Mix(120.0, 0.2, 0.02, 30),
    Mix(2.0, 0.05, 0.005, 60),
    Mix(10.0, 0.5, 0.05, 15),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 seeds instead of 8")
    args = ap.parse_args()
    seeds = range(3 if args.quick else 8)
    t_start = time.perf_counter()
    print(
        "| rpm | judge | feedback | golden | false firings / feature-week | "
        "-5% step | -10% step | -20% step | -10% 1-h ramp | -10% judge only | burst fires |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for mix in MIXES:
        clean_weeks = 0.0
        false = 0
        delays: dict[str, list[float]] = {k: [] for k in ("5", "10", "20", "ramp", "judge")}
        found: dict[str, int] = dict.fromkeys(delays, 0)
        bursts = 0
        for seed in seeds:
            days = 14.0
            trs = run(mix, seed, days)
            false += sum(1 for _, s in trs if s == "firing" and _ >= T0 + 2 * DAY)
            clean_weeks += (days - 2) / 7
            fault = T0 + 7 * DAY + 3600 * (seed % 24)
            for key, dec, ramp, src in (
                ("5", 0.05, 0.0, None), ("10", 0.10, 0.0, None), ("20", 0.20, 0.0, None),
                ("ramp", 0.10, 3600.0, None), ("judge", 0.10, 0.0, ("judge",)),
            ):  # fmt: skip
                kw = {} if src is None else {"sources": src}
                trs = run(mix, 1000 + seed, 7.0 + 4 / 24 + (seed % 24) / 24, fault, dec, ramp, **kw)
                hit = [t for t, s in trs if s == "firing" and t >= fault]
                if hit:
                    found[key] += 1
                    delays[key].append((hit[0] - fault) / 60.0)
            burst = T0 + 6 * DAY + 3600 * (seed % 24)
            trs = run(mix, 2000 + seed, 6.0 + 2 / 24 + (seed % 24) / 24, burst_at=burst)
            bursts += any(s == "firing" and burst <= t < burst + 3600 for t, s in trs)
        n = len(seeds)

        def cell(key: str, delays: dict[str, list[float]] = delays, n: int = n) -> str:
            if not delays[key]:
                return f"0/{n}"
            return f"{len(delays[key])}/{n}, {float(np.median(delays[key])):.0f} min"

        g = "-" if mix.golden_min is None else f"{mix.golden_min:.0f} min"
        print(
            f"| {mix.rpm:g} | {mix.judge_share:.0%} | {mix.feedback_share:.1%} | {g} | "
            f"{false / clean_weeks:.2f} | {cell('5')} | {cell('10')} | {cell('20')} | "
            f"{cell('ramp')} | {cell('judge')} | {bursts}/{n} |",
            flush=True,
        )
    print(f"\n({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
