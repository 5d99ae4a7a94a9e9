"""Deadlines for slow clients (slowloris), shared by every endpoint that reads a body.

aiohttp has no separate "request header" timeout: its `keepalive_timeout` timer runs from
the moment a connection is accepted (and again after each response) and closes a connection
that has not delivered complete request headers by then. `serve()` sets it to
`listen.header_timeout_s`, so slow headers and idle keep-alive connections are closed after
that long. Once the headers are in, aiohttp hands the request to a handler and no timer
applies to the body; `read_body` puts a deadline on it (`listen.body_timeout_s`, the whole
body, not per chunk, so a client dripping one byte a second cannot hold a connection).
A body past its deadline gets `408` and its connection is closed at once, rather than
lingering for aiohttp's `lingering_time` while the client keeps dripping.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web


class BodyTimeout(Exception):
    """The request body did not arrive within the deadline."""


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """`request.read()` with a deadline; raises BodyTimeout (and aiohttp's own 413)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise BodyTimeout(f"request body not received within {timeout_s:g} s") from None


async def body_timeout_response(request: web.Request, exc: BodyTimeout) -> web.StreamResponse:
    """Send `408` and close the connection: the rest of a slow body is not worth waiting for.

    The response is written here (not returned for aiohttp to write) so the connection can be
    closed right after it; asyncio flushes the buffered response before closing the socket.
    """
    resp = web.Response(
        body=orjson.dumps({"error": str(exc)}),
        status=408,
        content_type="application/json",
    )
    resp.force_close()  # `Connection: close`
    await resp.prepare(request)
    await resp.write_eof()
    if request.transport is not None:
        request.transport.close()
    return resp
