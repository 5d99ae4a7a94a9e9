"""The A/B loop the `*_ab.py` benches share: the same child program run in a fresh process
against this checkout and another one, alternating which goes first, so a noisy shared
machine slows both sides alike. The child prints one number (its own CPU time for the timed
part), last on stdout."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, checkout: Path, args: Sequence[str]) -> float:
    """Run `code` with `sys.argv[1]` = the checkout to import from, then `args`."""
    out = subprocess.run(
        [sys.executable, "-c", code, str(checkout), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def alternate(
    code: str, base: str, args: Sequence[str], repeat: int, unit: str
) -> dict[str, float]:
    """`repeat` runs per side, alternating; prints each side's median in `unit` (e.g.
    "s", "ms") with its runs, and the ratio this/base. Returns the medians by side."""
    sides = {"base": Path(base).resolve(), "this": ROOT}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(repeat):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        for name in order:
            times[name].append(run_child(code, sides[name], args))
    for name, path in sides.items():
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"{name} ({path}): median {statistics.median(times[name]):.3f} {unit} CPU [{runs}]")
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    print(f"this/base: {medians['this'] / medians['base']:.3f}")
    return medians
