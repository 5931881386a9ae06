"""A real `dvoinik serve` for tests: a tiny trained workspace, and uvicorn on a free port in a thread.

    ws = served_workspace(tmp_path)                       # trains the micro model for a few seconds
    with running_server(open_server(ws), ...) as url:     # http://127.0.0.1:PORT
        httpx.get(url + "/studio/api/info")
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training_fixtures import make_workspace

from dvoinik.serve.app import Server, create_app
from dvoinik.training.loop import train

# Blocks of 128 tokens give the studio a context worth metering; 24 steps take a few seconds.
SERVED_TRAIN = {"block_size": 128, "max_steps": 24, "save_every": 12, "eval_every": 12}


def served_workspace(root: Path):
    """A workspace with one trained run ("served") of the micro model."""
    ws = make_workspace(root, SERVED_TRAIN)
    train(ws, run="served")
    return ws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(server: Server, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `server` with uvicorn in a thread; yield its base URL; stop it (and its engine) afterwards."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(create_app(server), host=host, port=port, log_level="warning", lifespan="on")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=30)
