"""Putting a server together from a workspace, and running it with uvicorn."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dvoinik.generation.double import load_double
from dvoinik.generation.interview import frame_from_settings
from dvoinik.runs import AUTO
from dvoinik.workspace import Workspace

if TYPE_CHECKING:  # FastAPI is imported when a server is built, not when the CLI starts
    from dvoinik.serve.app import Server

DATABASE = Path("studio") / "studio.sqlite3"
KEEP_ALIVE_SECONDS = 5  # an idle kept-alive connection is closed after this (uvicorn's default, said aloud)


class ServeError(Exception):
    """A user-facing problem starting the server (one line)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this computer without an API key: the studio holds the writer's texts."""
    if not is_loopback(host) and not api_key:
        raise ServeError(f"--host {host} opens the server to the network: give an API key too "
                         "(--api-key KEY, or the DVOINIK_API_KEY environment variable)")
    if api_key is not None and len(api_key) < 8:
        raise ServeError("the API key is too short: use 8 characters or more")


def open_server(
    ws: Workspace, run: str | None = None, checkpoint: str = AUTO, style: dict[str, float] | None = None,
    api_key: str | None = None, host: str | None = None, queue_size: int | None = None,
    on_progress: Callable[[str], None] | None = None, database: Path | None = None,
) -> Server:
    """The double of `ws` loaded once, its engine and the studio's database (`studio/studio.sqlite3`)."""
    from dvoinik.serve.app import Server
    from dvoinik.serve.engine import Engine
    from dvoinik.serve.store import Locked, Store

    settings = ws.serve
    if host is not None:
        settings = replace(settings, host=host)
    if queue_size is not None:
        settings = replace(settings, queue_size=queue_size)
    check_binding(settings.host, api_key)
    try:  # before the model loads: a second server should fail in a moment, not after a minute
        store = Store.open(database or ws.root / DATABASE, exclusive=True)
    except Locked as exc:
        raise ServeError(str(exc)) from None
    try:
        double = load_double(ws, run, checkpoint, style, on_progress)
    except BaseException:
        store.close()
        raise
    # A style mix's runs share one base and corpus: the first one's held-out texts serve its blind tests.
    run_name = next(iter(style)) if style else run if run is not None else double.checkpoint.split("/")[0]
    frame, _ = frame_from_settings(ws.interview, ws.language, ws.corpus_dir)
    return Server(Engine(double, settings.queue_size), store, settings, ws.generate, api_key, ws, run_name,
                  loopback=is_loopback(settings.host), style=dict(double.mix), interview=frame)


def check_port(host: str, port: int) -> None:
    """Fail now, in one line, if the port is taken (uvicorn would say so only after the model has loaded)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server? try --port)") \
                from None


def uvicorn_config(server: Server, host: str, port: int, log_level: str = "info") -> Any:
    """uvicorn's settings for `server`: its app, with the deadlines and the connection cap of [serve]
    (serve/connections.py), and a log that a flood cannot grow by megabytes a second."""
    import uvicorn

    from dvoinik.serve.app import create_app
    from dvoinik.serve.connections import guarded_protocol, throttle_logs

    settings = server.settings
    config = uvicorn.Config(create_app(server), host=host, port=port, log_level=log_level, lifespan="on",
                            http=guarded_protocol(settings.header_timeout, settings.body_timeout,
                                                  settings.max_connections),
                            limit_concurrency=settings.max_connections + 1, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                            timeout_graceful_shutdown=5)
    throttle_logs()  # after the Config: it sets uvicorn's loggers up anew
    return config


def run_server(server: Server, port: int | None = None, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl+C stops the model's work and closes the database cleanly)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(server, server.settings.host, port or server.settings.port, log_level)).run()


@contextmanager
def serving_in_thread(server: Server, host: str = "127.0.0.1", start_seconds: float = 30) -> Iterator[str]:
    """Serve `server` with uvicorn on a free port in a background thread; yield its base URL; stop it after.

    For tests, benchmarks and notebooks: the same app and lifespan as `dvoinik serve`.
    """
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    instance = uvicorn.Server(uvicorn_config(server, host, port, log_level="warning"))
    thread = threading.Thread(target=instance.run, name="dvoinik-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_seconds
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            instance.should_exit = True
            raise ServeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=30)
