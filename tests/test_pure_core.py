"""The pure rooms (`detectors/`, `correlator/`, `daemon/layers/`) read no clock and do no I/O.

That is what lets the same code run live and in replay, and tests run in simulated time
(CONVENTIONS 4). The check is on the source: an import of a clock, I/O or concurrency module,
a call to `open()`, or a read of the current time fails it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_ROOMS = ("detectors", "correlator", "daemon/layers")

# `datetime` may format or parse a timestamp it is given (`fromtimestamp`, `fromisoformat`);
# reading the current time is caught by the needles below.
FORBIDDEN_MODULES = {
    "time",
    "asyncio",
    "os",
    "socket",
    "random",
    "threading",
    "sqlite3",
    "aiohttp",
    "structlog",
    "logging",
    "subprocess",
    "urllib",
    "pathlib",
}
CLOCK_NEEDLES = ("datetime.now", "datetime.utcnow", "time.time", "monotonic", "perf_counter")


def _modules() -> list[Path]:
    return sorted(p for room in PURE_ROOMS for p in (ROOT / room).glob("*.py"))


def test_every_pure_room_has_modules() -> None:
    for room in PURE_ROOMS:
        assert list((ROOT / room).glob("*.py")), room


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_clock_no_io(path: Path) -> None:
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots = {(node.module or "").split(".")[0]}
        else:
            if isinstance(node, ast.Name) and node.id == "open":
                pytest.fail(f"{path.name}: calls open()")
            continue
        assert not roots & FORBIDDEN_MODULES, f"{path.name} imports {roots & FORBIDDEN_MODULES}"
    for needle in CLOCK_NEEDLES:
        assert needle not in source, f"{path.name} mentions {needle}"
