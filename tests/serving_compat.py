"""A served double for the KoboldAI and OpenAI API tests: the micro model trained for a second, behind real uvicorn.

    ws = compat_workspace(tmp_path)                       # four training steps: fast, and it writes words
    with compat_server(ws, queue_size=2, api_key="k" * 8) as (url, server):
        httpx.post(url + "/api/v1/generate", json={"prompt": "..."})

Four steps teach the micro model little, which suits these tests: greedy decoding loops
on a syllable and never ends the text, so a long generation runs long enough to be aborted.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from serving import running_server
from training_fixtures import make_workspace

from dvoinik.generation.double import Double
from dvoinik.serve.app import Server
from dvoinik.serve.engine import Engine
from dvoinik.serve.launch import open_server
from dvoinik.serve.store import Store
from dvoinik.training.loop import train
from dvoinik.workspace import Workspace

QUICK_TRAIN = {"block_size": 128, "max_steps": 4, "save_every": 4, "eval_every": 4}
API_KEY = "test-key-123"


def compat_workspace(root: Path) -> Workspace:
    ws = make_workspace(root, QUICK_TRAIN)
    train(ws, run="served")
    return ws


@contextmanager
def compat_server(ws: Workspace, api_key: str | None = None, **serve: int) -> Iterator[tuple[str, Server]]:
    """The workspace's double served on a free loopback port, with [serve] settings replaced by `serve`."""
    # A database of its own: a test may run two servers on one workspace, and each holds its studio's lock.
    database = ws.root / "studio" / f"{secrets.token_hex(4)}.sqlite3"
    server = open_server(ws, api_key=api_key, queue_size=serve.get("queue_size"), database=database)
    server.settings = replace(server.settings, **serve)
    with running_server(server) as url:
        yield url, server


@contextmanager
def double_server(double: Double, root: Path) -> Iterator[tuple[str, Server]]:
    """Any double (a memorising one, say) served with the default settings: preset coherent, guard 10."""
    server = Server(Engine(double), Store.open(root / "studio.sqlite3"))
    with running_server(server) as url:
        yield url, server
