"""The array scan that counts and cuts a body's items without parsing it agrees with a JSON
parser on every array, whatever falls on a chunk boundary (tiny chunks make every escape,
quote and bracket land on one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.ingest import jsonscan
from daemon.ingest.jsonscan import array_shape

# Text full of what the scan must see through: quotes, backslashes, brackets, commas.
TRICKY = st.text(alphabet='a"\\,[]{} \n\u00e9', max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=20,
)


def items_of(body: bytes) -> list[Any]:
    shape = array_shape(body)
    return [json.loads(body[slice(*shape.bounds(i))]) for i in range(shape.items)]


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
@settings(max_examples=150, deadline=None)
@given(items=st.lists(VALUES, max_size=6), indent=st.sampled_from([None, 0, 2]))
def test_items_and_bounds_match_a_parser(items: list[Any], indent: int | None, chunk: int) -> None:
    body = json.dumps(items, indent=indent, ensure_ascii=False).encode()
    old = jsonscan.CHUNK
    jsonscan.CHUNK = chunk
    try:
        shape = array_shape(body)
        assert shape.items == len(items)
        assert shape.closed_at == len(body) - 1
        assert items_of(body) == items
    finally:
        jsonscan.CHUNK = old


@pytest.mark.parametrize(
    ("body", "items"),
    [
        (b"[]", []),
        (b" [ \n ] ", []),
        (b'["\\\\", 1]', ["\\", 1]),  # an escaped backslash ends before the quote
        (b'["a\\\\\\"b,]", 1]', ['a\\"b,]', 1]),  # an escaped quote does not end the string
        (b"[[[[[[1]]]]], 2]", [[[[[[1]]]]], 2]),
    ],
)
def test_examples(body: bytes, items: list[Any]) -> None:
    assert items_of(body) == items


def test_nesting_has_no_depth_limit() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b"[1," + deep + b",2]"
    shape = array_shape(body)
    assert shape.items == 3 and shape.bounds(1) == (3, 3 + len(deep))


def test_counting_stops_past_the_limit() -> None:
    body = b"[" + b",".join([b"1"] * 1_000_000) + b"]"
    assert array_shape(body).items == 1_000_000
    assert 1000 < array_shape(body, stop_after=1000).items < 1_000_000
