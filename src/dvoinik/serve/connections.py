"""Connections a slow, half-open or flooding client cannot hold: deadlines, a cap, and a log that stays small.

uvicorn cuts idle keep-alive connections, but not a client that sends a request's head
one byte at a time, or never finishes its body: each such connection holds a file
descriptor for ever, and a few hundred of them stop the server answering anyone. So
`dvoinik serve` runs uvicorn's h11 protocol with three additions (`[serve]` settings):

- a request's head must arrive within `header_timeout` seconds of the connection opening
  (or of the last response on a kept-alive connection): else "408 Request Timeout" (to a
  client that began one; a silent connection is just closed) and close;
- its body within `body_timeout` seconds of the head;
- at most `max_connections` connections are open; one more is closed as soon as it opens
  (and uvicorn's `limit_concurrency` answers requests beyond it with 503).

A streamed response (variants being written) has no deadline: the request is complete by then.
`ThrottledLog` keeps uvicorn's log from growing by megabytes a second under a flood: each
kind of message is written at most `per_second` times a second, with a count of those left out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
LOGGERS = ("uvicorn.error", "uvicorn.access")
log = logging.getLogger("uvicorn.error")


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines for a request's head and body and a cap on open connections."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 100

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._deadline: Any = None
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("refused a connection: %d are open, the most [serve] max_connections allows",
                        self.max_connections)
            transport.close()
            return
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        self._started = True
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY and self._waiting_for != "body":
            self._arm(self.body_timeout, "body")  # the head is in: the body's deadline starts now
        elif state is not h11.IDLE and state is not h11.SEND_BODY:
            self._disarm()  # the whole request is in; the answer may take as long as it takes

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._started = False
            self._arm(self.header_timeout)  # the next request on this connection has its own deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ------------------------------------------------------------------ deadlines

    _waiting_for = ""
    _started = False  # a byte of the awaited request has come (a silent connection is closed without a word)

    def _arm(self, seconds: float, what: str = "head") -> None:
        self._disarm()
        self._waiting_for = what
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
        self._deadline, self._waiting_for = None, ""

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE or state is h11.SEND_BODY:
            # (While the head is awaited, any cycle is the last request's, long answered.)
            if self._started and (state is h11.IDLE or not self.cycle.response_started):
                self.transport.write(REQUEST_TIMEOUT)
            log.warning("closed a connection from %s: its request's %s did not arrive in time",
                        self.client[0] if self.client else "?", self._waiting_for or "head")
            self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http=` with these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections})


class ThrottledLog(logging.Filter):
    """Let each kind of message (its format string) through at most `per_second` times a second.

    The first record after a quiet second says how many were left out, so nothing is hidden
    but the repetition.
    """

    def __init__(self, per_second: int = 20) -> None:
        super().__init__("dvoinik-throttle")
        self.per_second = per_second
        self._lock = threading.Lock()
        self._windows: dict[Any, list] = {}  # format -> [second, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        now = int(time.monotonic())
        with self._lock:
            window = self._windows.setdefault(record.msg, [now, 0, 0])
            if window[0] != now:
                if window[2]:
                    record.msg = f"{record.msg} [and {window[2]} more like it left out of the log]"
                window[:] = [now, 0, 0]
            if window[1] >= self.per_second:
                window[2] += 1
                return False
            window[1] += 1
            if len(self._windows) > 1000:  # formats are few; a flood of distinct ones must not grow this
                self._windows.clear()
            return True


def throttle_logs(per_second: int = 20) -> None:
    """Install one `ThrottledLog` on uvicorn's loggers (again and again: still one)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ThrottledLog) for f in logger.filters):
            logger.addFilter(ThrottledLog(per_second))
