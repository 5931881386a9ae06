"""Shared fixtures: the shared real-text corpus, when it is beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `-n 2` on two cores: a worker's torch (and the commands it starts) taking every core
    # makes the two workers fight over them; one thread each is faster in all.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    """`../shared/corpus` from the project root; tests that need it skip where it is absent."""
    if not (SHARED_CORPUS / "ru-classics").is_dir():
        pytest.skip("shared corpus not found at ../shared/corpus")
    return SHARED_CORPUS


@pytest.fixture(scope="session")
def served_ws(tmp_path_factory: pytest.TempPathFactory):
    """A workspace with a trained micro run, shared by the server tests of one worker (training takes seconds)."""
    from serving import served_workspace

    return served_workspace(tmp_path_factory.mktemp("served"))
