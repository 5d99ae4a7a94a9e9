"""The top level of a JSON array, found without parsing it: how many items it has, and where
each one starts and ends.

Two things need that before (or instead of) a parse. The item cap (`ingest.max_body_events`)
must refuse `[1,1,1,…]` with four million items before anything builds four million of
anything: a parser's tree of them alone is ~100 MB, pydantic's errors for them were 1.1 GB.
And an item nested deeper than the JSON reader goes (200 levels) makes the parser refuse the
whole document; cut at its top-level commas, the other items still parse, and only that one is
refused (`daemon.ingest.events`).

The scan is vectorised with numpy over chunks of the body, with the string and depth state
carried from one chunk to the next, so it costs a few passes in C whatever the shape of the
body, and its memory is bounded by the chunk, not by the body or its nesting (depth is a
running sum, not a recursion). Counting against a limit stops at the chunk where the limit is
passed. For valid JSON the answer is exact; for invalid JSON it is some answer (a string that
never closes hides everything after it), and the parser that runs next reports the error.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_QUOTE, _BACKSLASH, _COMMA = ord('"'), ord("\\"), ord(",")
# +1 for an opening bracket, -1 for a closing one, 0 for a comma; 2 for every other byte
# (not structural: filtered out before the depth is summed).
_STEP = np.full(256, 2, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_STEP[_COMMA] = 0
_STEP.flags.writeable = False
CHUNK = 1 << 18  # 256 KiB: the scan holds ~6 MB of arrays, at no cost in speed


class ArrayShape:
    """Where the items of a top-level JSON array are: `items` is their number (or, when the
    scan stopped at a limit, the first number past it), `bounds(i)` the byte range of item i,
    whitespace included, and `closed_at` the position of the closing bracket (-1: none seen)."""

    __slots__ = ("_cuts", "closed_at", "items")

    def __init__(self, cuts: npt.NDArray[np.int64], closed_at: int, items: int) -> None:
        self._cuts = cuts  # the opening bracket, each top-level comma, then the end
        self.closed_at = closed_at
        self.items = items

    def bounds(self, i: int) -> tuple[int, int]:
        return int(self._cuts[i]) + 1, int(self._cuts[i + 1])


def _quotes(chunk: npt.NDArray[np.uint8], odd_run_before: bool) -> npt.NDArray[np.bool_]:
    """The unescaped quotes of a chunk. A quote is escaped when an odd run of backslashes
    stands right before it (`"\\\\"` ends a string, `"\\""` does not); `odd_run_before` says
    whether the previous chunk ended in an odd run."""
    quote: npt.NDArray[np.bool_] = np.equal(chunk, _QUOTE)
    bs: npt.NDArray[np.bool_] = np.equal(chunk, _BACKSLASH)
    if not bs.any() and not odd_run_before:
        return quote  # nearly every real body: no quote can be escaped
    q = np.flatnonzero(quote)
    if odd_run_before and len(q) and q[0] == 0:
        quote[0] = False
    q = q[q > 0]
    after = q[bs[q - 1]]
    if len(after):
        starts = np.flatnonzero(bs & ~np.concatenate(([False], bs[:-1])))
        run_start = starts[np.searchsorted(starts, after - 1, side="right") - 1]
        run = after - run_start + np.where(run_start == 0, int(odd_run_before), 0)
        quote[after[run % 2 == 1]] = False
    return quote


def _trailing_run(chunk: npt.NDArray[np.uint8]) -> int:
    not_bs = np.flatnonzero(chunk != _BACKSLASH)
    return len(chunk) - 1 - int(not_bs[-1]) if len(not_bs) else len(chunk)


def array_shape(body: bytes, stop_after: int | None = None) -> ArrayShape:
    """The shape of the JSON array in `body`, which must start with `[` (after whitespace).

    With `stop_after`, the scan stops in the chunk where the count of items passes it, so
    refusing a body of millions of tiny items costs the first `stop_after` of them."""
    a = np.frombuffer(body, dtype=np.uint8)
    cuts: list[npt.NDArray[np.int64]] = []
    in_string, depth, odd_run = 0, 0, False
    opened, closed_at, commas = -1, -1, 0
    for start in range(0, len(a), CHUNK):
        chunk = a[start : start + CHUNK]
        # Inside a string after an odd number of unescaped quotes (the opening one counted, the
        # closing one not): brackets and commas there are text. uint8 wraps, parity holds.
        inside = (np.cumsum(_quotes(chunk, odd_run), dtype=np.uint8) + in_string) & 1
        in_string = int(inside[-1])
        run = _trailing_run(chunk)
        odd_run = (run % 2 == 1) if run < len(chunk) else (odd_run ^ (run % 2 == 1))
        step = _STEP[chunk]
        pos = np.flatnonzero((step != 2) & (inside == 0))
        if not len(pos):
            continue
        levels = np.cumsum(step[pos], dtype=np.int64) + depth
        depth = int(levels[-1])
        if opened < 0:
            opened = start + int(pos[0])
        ends = np.flatnonzero(levels <= 0)
        stop = int(ends[0]) if len(ends) else len(pos)
        top = pos[:stop][(levels[:stop] == 1) & (chunk[pos[:stop]] == _COMMA)]
        cuts.append(top.astype(np.int64) + start)
        commas += len(top)
        if stop < len(pos):
            closed_at = start + int(pos[stop])
            break
        if stop_after is not None and commas >= stop_after:
            break
    end = closed_at if closed_at >= 0 else len(body)
    bounds = np.concatenate([np.array([opened], np.int64), *cuts, np.array([end], np.int64)])
    empty = commas == 0 and not body[opened + 1 : end].strip()
    return ArrayShape(bounds, closed_at, 0 if empty else commas + 1)
