"""Durations as people type them (`90s`, `30m`, `2h`, `1d`, `1h30m`), for silences from the
CLI and the incident page's form."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str, where: str = "duration") -> float:
    """Seconds in `text`; a ValueError naming `where` for anything else (`2`, `2x`, `-1h`)."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _PART.sub("", compact):
        raise ValueError(f"{where}: {text!r} is not a duration like 90s, 30m, 2h, 1d or 1h30m")
    seconds = sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{where}: must be longer than 0")
    return seconds


def format_duration(seconds: float) -> str:
    """`2h 13m`, `45s`: an age on the incident list, the two largest units."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{u}" for n, u in parts if n][:2]
    return " ".join(shown) or "0s"
