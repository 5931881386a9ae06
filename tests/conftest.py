"""Shared fixtures: the shared real-text corpus, when it is beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = PROJECT_ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def shared_corpus() -> Path:
    """`../shared/corpus` from the project root; tests that need it skip where it is absent."""
    if not (SHARED_CORPUS / "ru-classics").is_dir():
        pytest.skip("shared corpus not found at ../shared/corpus")
    return SHARED_CORPUS
