"""`dvoinik check`: a planted passage is found and named; a paraphrase is not."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from synthetic import synthetic_prose
from test_cli import assert_user_error, invoke
from training_fixtures import MICRO

from dvoinik.corpus.build import build_corpus, load_documents
from dvoinik.generation.check import check_file
from dvoinik.training.loop import train
from dvoinik.workspace import Workspace, add_sources, init_workspace, write_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """A workspace whose works never repeat a sentence (so a passage occurs once), with a short run."""
    root = tmp_path_factory.mktemp("check")
    for author, seed in (("target", 10), ("influence", 20)):
        (root / "books" / author).mkdir(parents=True)
        for work in range(3):
            (root / "books" / author / f"work{work}.txt").write_text(synthetic_prose(seed + work, 25), encoding="utf-8")
    ws = init_workspace(root / "double")
    ws, _ = add_sources(ws, [root / "books" / "target"], author="Цель", role="target")
    ws, _ = add_sources(ws, [root / "books" / "influence"], author="Влияние")
    ws = write_settings(ws, "train", MICRO)
    build_corpus(ws)
    train(ws, run="c", overrides={"max_steps": 2})
    return ws


def _passage(ws: Workspace, words: int = 60) -> tuple[str, str]:
    """`words` consecutive words from the middle of a training work of the target, and that work's title."""
    import re

    doc = next(d for d in load_documents(ws.corpus_dir) if d.split == "train" and d.role == "target")
    starts = [m.start() for m in re.finditer(r"\S+", doc.text)]
    middle = len(starts) // 2
    return doc.text[starts[middle] : starts[middle + words] - 1], doc.title


def _paraphrase(passage: str) -> str:
    """Every third word replaced: the content stays, no long span survives."""
    rng = random.Random(0)
    return " ".join(w if i % 3 else rng.choice(["тихо", "вдруг", "снова", "опять"]) for i, w in enumerate(passage.split()))


def test_a_planted_passage_is_found_and_named(trained: Workspace, tmp_path: Path) -> None:
    passage, title = _passage(trained)
    around = synthetic_prose(999, 2).split("\n\n")
    file = tmp_path / "draft.txt"
    file.write_text(f"{around[0]}\n\n{passage}\n\n{around[1]}\n", encoding="utf-8")
    report = check_file(trained, file)
    assert len(report.spans) == 1
    span = report.spans[0]
    assert span.tokens >= 50 and span.work == title and span.author == "Цель"
    assert passage[10:-10] in span.text  # the span is the planted words (give or take a boundary token)
    assert len(span.text) < len(passage) + 20
    document = next(d for d in load_documents(trained.corpus_dir) if d.id == span.work_id)
    assert document.text[span.work_start : span.work_start + len(span.text)] == span.text
    assert 0.3 < span.work_share < 0.7  # from the middle of the work
    assert report.longest == span and 0.2 < report.copied_share < 0.8

    result = invoke("-w", trained.root, "check", file)
    assert result.exit_code == 1, result.output
    assert title in result.stdout and "1 span(s) of 50+ tokens" in result.stdout
    as_json = invoke("-w", trained.root, "check", file, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["spans"][0]["work"] == title


def test_a_paraphrase_has_nothing_long(trained: Workspace, tmp_path: Path) -> None:
    passage, _ = _passage(trained)
    file = tmp_path / "paraphrase.txt"
    file.write_text(_paraphrase(passage), encoding="utf-8")
    report = check_file(trained, file)
    assert report.spans == [] and report.longest.tokens < 20
    result = invoke("-w", trained.root, "check", file)
    assert result.exit_code == 0, result.output
    assert "0 span(s)" in result.stdout
    lower = invoke("-w", trained.root, "check", file, "--min-tokens", "3")
    assert lower.exit_code == 1  # the threshold is the user's


def test_check_refuses_bad_input(trained: Workspace, tmp_path: Path) -> None:
    assert_user_error(invoke("-w", trained.root, "check", tmp_path / "missing.txt"), "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n", encoding="utf-8")
    assert_user_error(invoke("-w", trained.root, "check", empty), "empty.txt")
    assert_user_error(invoke("-w", trained.root, "check", empty, "--run", "nope"), "no such run")
    assert_user_error(invoke("-w", trained.root, "check", empty, "--min-tokens", "0"), "--min-tokens 0")
