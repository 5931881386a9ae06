from __future__ import annotations

import json
from pathlib import Path

import pytest
from training_fixtures import make_workspace

from dvoinik.runs import RunError, find_run, resolve_checkpoint, run_token_set
from dvoinik.training.loop import train


def test_runs_and_checkpoints_by_name_best_last_and_auto(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    with pytest.raises(RunError, match="no runs yet"):
        find_run(ws)
    train(ws, run="a", overrides={"max_steps": 4, "save_every": 2})
    run = find_run(ws)
    assert run.name == "a" and run_token_set(ws, run).key == run.tokens_key
    assert resolve_checkpoint(run, "last").name == "checkpoint-4"
    assert resolve_checkpoint(run, "auto").name == "checkpoint-4"  # not evaluated: the last
    assert resolve_checkpoint(run, "2") == resolve_checkpoint(run, "checkpoint-2")
    with pytest.raises(RunError, match="no recommendation yet"):
        resolve_checkpoint(run, "best")
    with pytest.raises(RunError, match="no such checkpoint.*checkpoint-2, checkpoint-4"):
        resolve_checkpoint(run, "checkpoint-3")
    run.report_path.parent.mkdir()
    run.report_path.write_text(json.dumps({"recommended": None}), encoding="utf-8")
    with pytest.raises(RunError, match="recommends no checkpoint"):
        resolve_checkpoint(run, "best")
    assert resolve_checkpoint(run, "auto").name == "checkpoint-4"
    run.report_path.write_text(json.dumps({"recommended": "checkpoint-9"}), encoding="utf-8")
    with pytest.raises(RunError, match="the recommended checkpoint-9 no longer exists"):
        resolve_checkpoint(run, "best")
    run.report_path.write_text(json.dumps({"recommended": "checkpoint-2"}), encoding="utf-8")
    assert resolve_checkpoint(run, "best").name == "checkpoint-2"
    assert resolve_checkpoint(run, "auto").name == "checkpoint-2"

    train(ws, run="b", overrides={"max_steps": 2})
    assert find_run(ws).name == "b"  # the latest
    assert find_run(ws, "a").name == "a"
    with pytest.raises(RunError, match="no such run.*runs: a, b"):
        find_run(ws, "c")


def test_a_rebuilt_tokenizer_is_not_used_for_an_older_run(tmp_path: Path) -> None:
    from dvoinik.corpus.build import build_corpus
    from dvoinik.workspace import write_settings

    ws = make_workspace(tmp_path)
    train(ws, run="old", overrides={"max_steps": 2})
    assert run_token_set(ws, find_run(ws, "old")).key == "bpe-400"
    # The corpus changes (a smaller vocabulary would be another key; the same key is retrained in place).
    ws = write_settings(ws, "corpus", {"val_fraction": 0.5})
    build_corpus(ws)
    train(ws, run="new", overrides={"max_steps": 2})
    with pytest.raises(RunError, match="rebuilt with another tokenizer after run 'old' was trained"):
        run_token_set(ws, find_run(ws, "old"))
    assert run_token_set(ws, find_run(ws, "new")).key == "bpe-400"
