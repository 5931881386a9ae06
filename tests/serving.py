"""A real `dvoinik serve` for tests: a tiny trained workspace, and uvicorn on a free port in a thread.

    ws = served_workspace(tmp_path)                       # trains the micro model for a few seconds
    with running_server(open_server(ws), ...) as url:     # http://127.0.0.1:PORT
        httpx.get(url + "/studio/api/info")
"""

from __future__ import annotations

import socket
from pathlib import Path

from training_fixtures import make_workspace

from dvoinik.serve.app import Server
from dvoinik.serve.launch import serving_in_thread
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


def running_server(server: Server, host: str = "127.0.0.1"):
    """Serve `server` with uvicorn in a thread; a context manager yielding its base URL."""
    return serving_in_thread(server, host)
