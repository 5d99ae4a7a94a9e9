"""structlog set-up: JSON lines for machines, the console renderer on a terminal.

A redaction processor runs last before rendering, so a secret that slips into an event dict
(a routing key, a token) is masked whatever the call site did.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_WORDS = ("token", "secret", "routing_key", "api_key", "password", "authorization")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SECRET_WORDS) and event[key] is not None:
            event[key] = "***"
    return event


def configure(level: str = "info", fmt: str = "auto") -> structlog.stdlib.BoundLogger:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logger: structlog.stdlib.BoundLogger = structlog.get_logger("llm_oncall")
    _route_aiohttp_server_log(logger)
    return logger


BAD_REQUEST_LOG_INTERVAL_S = 10.0


class _AiohttpServerLog(logging.Handler):
    """aiohttp's server logger, as one JSON line per event, at a bounded rate.

    aiohttp answers a malformed request (a request line or header over 8190 bytes, a
    negative Content-Length, a bad chunk size) with 400 itself and logs "Error handling
    request" with a multi-line traceback through the stdlib's last-resort handler, once per
    request: any client could flood the log. A malformed request is the client's fault, so
    it gets one `http_bad_request` line without traceback; anything else aiohttp logs (an
    exception escaping a handler, our bug) keeps its traceback as a field of one line. Both
    are logged at most once per BAD_REQUEST_LOG_INTERVAL_S per kind, with `not_logged_since`
    counting the ones held back.
    """

    def __init__(self, log: Any) -> None:
        super().__init__(logging.DEBUG)
        self._log = log
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        client = isinstance(exc, HttpProcessingError)
        if record.levelno < logging.WARNING and not client:
            return
        kind = "http_bad_request" if client else "http_server_error"
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < BAD_REQUEST_LOG_INTERVAL_S:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must not lose the line
            message = str(record.msg)
        if client:
            error = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]
            remote = str(record.args[0]) if isinstance(record.args, tuple) and record.args else None
            self._log.warning(kind, error=error, remote=remote, not_logged_since=held)
        else:
            self._log.error(
                kind, message=message[:200], not_logged_since=held, exc_info=record.exc_info
            )


def _route_aiohttp_server_log(log: Any) -> None:
    server = logging.getLogger("aiohttp.server")
    for handler in list(server.handlers):
        if isinstance(handler, _AiohttpServerLog):
            server.removeHandler(handler)
    server.addHandler(_AiohttpServerLog(log))
    server.setLevel(logging.DEBUG)  # BadHttpMethod comes at debug: counted like the rest
    server.propagate = False
