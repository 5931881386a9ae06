"""Slow, half-open and flooding clients against a real uvicorn (in a thread): deadlines, a cap, a small log."""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from dvoinik.generation.double import Double
from dvoinik.serve.app import Server
from dvoinik.serve.connections import ThrottledLog
from dvoinik.serve.engine import Engine
from dvoinik.serve.launch import serving_in_thread
from dvoinik.serve.store import Store
from dvoinik.workspace import ServeSettings


def server(tmp_path: Path, **settings) -> Server:
    """A server with no model behind it: these tests never reach one."""
    return Server(Engine(Double(None, None, "none")), Store.open(tmp_path / "s.sqlite3"),
                  replace(ServeSettings(), **settings))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def connect(url: str) -> socket.socket:
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(10)
    return sock


def closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sent before closing (a timeout here means it held the connection)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts file descriptors in /proc")
def test_slow_and_half_open_clients_are_cut_off_and_the_server_keeps_answering(tmp_path: Path) -> None:
    with serving_in_thread(server(tmp_path, header_timeout=1.0, body_timeout=1.0)) as url, ExitStack() as stack:
        before = open_fds()
        silent = [stack.enter_context(connect(url)) for _ in range(30)]  # connect and say nothing
        partial_head = [stack.enter_context(connect(url)) for _ in range(30)]
        for sock in partial_head:  # the request's head, never finished (slowloris)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        partial_body = [stack.enter_context(connect(url)) for _ in range(30)]
        for sock in partial_body:  # a head, and a tenth of the body it promised
            sock.sendall(b"POST /studio/api/documents HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 100\r\n\r\n{\"title\": ")
        time.sleep(0.3)
        assert open_fds() >= before + 2 * 90  # each held at both ends meanwhile
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200  # and others are still answered
        for sock in silent:
            assert closed_by_server(sock) == b""  # nothing was asked, nothing is answered
        for sock in partial_head + partial_body:
            assert closed_by_server(sock).startswith(b"HTTP/1.1 408 Request Timeout")
        time.sleep(0.2)
        assert open_fds() <= before + 90 + 5  # only this side's sockets are left: the server holds none
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        assert server_documents(url) == []  # the half-sent document was not created
        # uvicorn's own log is the one throttled (a flood of bad requests once wrote 66 MB in 10 s)
        assert any(isinstance(f, ThrottledLog) for f in logging.getLogger("uvicorn.error").filters)


def server_documents(url: str) -> list:
    return httpx.get(url + "/studio/api/documents", timeout=5).json()


def test_connections_beyond_the_cap_are_closed_at_once(tmp_path: Path) -> None:
    with serving_in_thread(server(tmp_path, max_connections=10, header_timeout=30.0)) as url, ExitStack() as stack:
        held = [stack.enter_context(connect(url)) for _ in range(10)]
        time.sleep(0.3)
        extra = stack.enter_context(connect(url))
        assert closed_by_server(extra) == b""  # closed as soon as it opened, not held for 30 s
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200  # room again


def test_a_kept_alive_connection_gets_a_new_deadline_for_its_next_request(tmp_path: Path) -> None:
    with serving_in_thread(server(tmp_path, header_timeout=1.0)) as url, connect(url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: loc")  # the next request stalls half-way
        assert closed_by_server(sock).startswith(b"HTTP/1.1 408")


def test_the_log_keeps_each_kind_of_message_to_a_few_a_second() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("dvoinik-test-throttle")
    logger.propagate = False
    logger.addHandler(Keep())
    logger.addFilter(ThrottledLog(per_second=20))
    second = int(time.monotonic())
    while int(time.monotonic()) == second:  # start at the beginning of a second
        time.sleep(0.005)
    for _ in range(10_000):  # a flood of invalid requests
        logger.warning("Invalid HTTP request received.")
    logger.warning("another kind: %s", "kept")
    time.sleep(1.05)
    logger.warning("Invalid HTTP request received.")
    assert records.count("Invalid HTTP request received.") == 20
    assert "another kind: kept" in records
    assert records[-1] == "Invalid HTTP request received. [and 9980 more like it left out of the log]"
