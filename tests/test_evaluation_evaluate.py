from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import invoke
from training_fixtures import make_workspace

from dvoinik.evaluation.evaluate import (
    EvaluationError,
    distinct_n,
    evaluate_run,
    novel_ngram_shares,
    passages,
    repetition,
    reproduces,
)
from dvoinik.runs import find_run, resolve_checkpoint
from dvoinik.training.loop import train
from dvoinik.workspace import write_settings


def test_novel_ngrams_from_matching_statistics() -> None:
    lengths = np.array([3, 2, 1, 0, 2, 1])  # the longest match found at each start
    shares = novel_ngram_shares([lengths], (1, 2, 3, 7))
    assert shares[1] == pytest.approx(1 / 6)  # only the token at 3 is new
    assert shares[2] == pytest.approx(2 / 5)  # the bigrams at 2 and 3 are new
    assert shares[3] == pytest.approx(3 / 4)  # only the trigram at 0 occurs
    assert shares[7] is None  # the text has no 7-gram
    pooled = novel_ngram_shares([lengths, np.array([0, 0])], (1, 3))
    assert pooled[1] == pytest.approx(3 / 8) and pooled[3] == pytest.approx(3 / 4)  # a 2-token text adds no trigram


def test_distinct_and_repetition() -> None:
    assert distinct_n(["а б в", "а б г"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["а б в", "а б г"], 2) == pytest.approx(3 / 4)
    assert repetition("раз два три раз два три раз") == pytest.approx(2 / 5)  # the last two trigrams repeat
    assert repetition("раз два") == 0.0


def test_passages_stay_inside_one_work_and_start_on_a_word() -> None:
    tokens = np.arange(100) % 50  # two documents of 50 tokens (EOS last)
    documents = [(0, 50, "one"), (50, 50, "two")]
    found = passages(tokens, documents, count=10, prompt_len=8, continuation_len=16)
    for passage in found:
        window = passage.prompt + passage.continuation
        assert len(window) == 24 and window == list(range(window[0], window[0] + 24))  # no jump across a document
    assert {p.work for p in found} == {"one", "two"}
    starts_word = np.zeros(50, dtype=bool)
    starts_word[[5, 30]] = True
    shifted = passages(tokens, documents, count=1, prompt_len=8, continuation_len=16, starts_word=starts_word)
    assert shifted[0].prompt[0] == 5
    assert passages(tokens, documents, count=3, prompt_len=40, continuation_len=40) == []  # works too short


def test_samples_without_words_count_against_the_target(tmp_path: Path) -> None:
    from synthetic import synthetic_prose

    from dvoinik.evaluation.evaluate import NO_WORDS, measure_texts
    from dvoinik.evaluation.stylometry import StyleSettings, fit_style_model
    from dvoinik.generation.copyindex import SourceWork, write_copy_index
    from dvoinik.tokens import train_bpe_tokenizer

    texts = {"А": [(f"a{i}", synthetic_prose(i, 40)) for i in range(2)],
             "Б": [(f"b{i}", synthetic_prose(50 + i, 40)) for i in range(2)]}
    style = fit_style_model(texts, StyleSettings(char_features=3000, word_features=1000, chunk_words=300, mfw=100,
                                                 delta_char_features=300, delta_chunk_words=300, min_words=1))
    tokenizer = train_bpe_tokenizer(lambda: iter([t for works in texts.values() for _, t in works]), 300)
    ids = tokenizer(texts["А"][0][1], add_special_tokens=False).input_ids
    index = write_copy_index(np.asarray(ids, dtype=np.uint16), [SourceWork("a0", "А", "a0", 0, len(ids))],
                             tmp_path / "index", "t")
    measures = measure_texts([texts["А"][1][1][:3000], "", " ... "], tokenizer, index, style, "А", 50)
    assert measures.attributed == {"А": 1, NO_WORDS: 2} and measures.target_share == pytest.approx(1 / 3)
    assert measures.authors == ["А", NO_WORDS, NO_WORDS]  # per prompt, in order: the recommendation pairs them
    assert measures.longest_spans[1] == 0


def test_reproduction_is_counted_word_for_word() -> None:
    real = "— Ну, полно! Человек для искусства просит, а не для пустя"  # cut inside a word by the 64th token
    assert reproduces("- Ну полно!\nЧеловек для искусства\nпросит  а не для пустяков", real)
    assert reproduces(" ну, полно! человек для искусства просит, а не для пу", real)
    assert not reproduces("— Ну, полно! Человек для науки просит, а не для пустяков", real)
    assert not reproduces("— Ну, полно!", real)  # stopped short


def test_evaluate_writes_its_report_on_a_real_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, {"max_steps": 8, "save_every": 4})
    ws = write_settings(ws, "evaluate", {"prompts": 4, "prompt_tokens": 12, "sample_tokens": 24, "extraction_prompts": 3})
    with pytest.raises(Exception, match="no runs yet"):
        evaluate_run(ws)
    train(ws, run="r")
    seen: list[tuple[str, int, int]] = []
    result = evaluate_run(ws, on_progress=lambda *a: seen.append(a))
    assert seen[-1] == ("writing the report", 2, 2) and ("evaluating checkpoint-8", 1, 2) in seen

    report = json.loads((result.folder / "report.json").read_text(encoding="utf-8"))
    # The micro model was trained on 32-token blocks: 12 prompt tokens leave 20 for a sample, and the audit halves 32.
    assert report["sample_tokens"] == 20 and report["extraction_tokens"] == 16
    assert [c["name"] for c in report["checkpoints"]] == ["checkpoint-4", "checkpoint-8"]
    assert report["recommended"] in ("checkpoint-4", "checkpoint-8") and report["rule"].startswith("Among checkpoints")
    for checkpoint in report["checkpoints"]:
        assert checkpoint["val_target_ppl"] > 1 and checkpoint["val_influences_ppl"] > 1
        samples = checkpoint["samples"]
        assert sum(samples["attributed"].values()) == 4 and 0 <= samples["target_share"] <= 1
        assert set(samples["novel_ngrams"]) == {str(n) for n in range(1, 21)}
        assert len(samples["longest_spans"]) == 4 and checkpoint["extraction"]["prompts"] == 3
        assert all(0 <= samples["distinct"][n] <= 1 for n in ("1", "2", "3"))
        assert len(samples["authors"]) == 4
        low, high = checkpoint["intervals"]["target_share"]
        assert low <= samples["target_share"] <= high
        blind = checkpoint["blind_test"]
        assert blind["pairs"] + blind["dropped_pairs"] == 4
        for reader in ("ngrams", "surprisal"):  # 4 prompts: 8 texts, 4 folds
            assert blind[reader]["accuracy"] is None or blind[reader]["low"] <= blind[reader]["accuracy"] <= blind[reader]["high"]
    # Real held-out text: the ceiling of style, and a novelty curve that rises with n (in words: 20 tokens hold
    # about ten, so there is no 20-word n-gram to count).
    novel = report["ceiling"]["novel_ngrams"]
    assert novel["1"] <= novel["3"] <= novel["5"] and novel["20"] is None
    # Copying is counted in normalised words, as `check` counts; the token figures stay beside them.
    assert report["copy_unit"] == "words" and report["min_words"] == 27 and "27+ words" in report["rule"]
    for checkpoint in report["checkpoints"]:
        assert checkpoint["samples"]["unit"] == "words" and len(checkpoint["samples"]["longest_token_spans"]) == 4
        assert 0 <= checkpoint["extraction"]["token_exact_share"] <= checkpoint["extraction"]["exact_share"] <= 1
    html = (result.folder / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 7 and "Rule:" in html and "Blind test" in html
    assert sorted(p.name for p in (result.folder / "plots").iterdir()) == [
        "blind_test.png", "copying.png", "diversity.png", "memorisation.png", "novelty.png", "perplexity.png", "style.png"]
    assert resolve_checkpoint(find_run(ws), "best").name == report["recommended"]
    assert not [p for p in result.folder.parent.iterdir() if p.name.startswith(".evaluation")]

    shown = invoke("-w", ws.root, "evaluate", "--run", "r")
    assert shown.exit_code == 0, shown.output
    assert f"Recommended: {report['recommended']}" in shown.stdout and "report.html" in shown.stdout
    assert "50% = it cannot tell them apart" in shown.stdout


def test_evaluate_keeps_prompt_and_sample_within_the_trained_length(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, {"max_steps": 2})  # the micro model trains on 32-token blocks
    ws = write_settings(ws, "evaluate", {"prompt_tokens": 30})
    train(ws, run="r")
    with pytest.raises(EvaluationError, match=r"prompt_tokens = 30 leaves no room for a sample in the 32 tokens"):
        evaluate_run(ws)


def test_a_single_author_workspace_is_evaluated_without_style(tmp_path: Path) -> None:
    from training_fixtures import MICRO, patterned_prose

    from dvoinik.corpus.build import build_corpus
    from dvoinik.workspace import add_sources, init_workspace

    books = tmp_path / "books"
    books.mkdir()
    for work in range(4):
        (books / f"work{work}.txt").write_text(patterned_prose(3 + work, 30), encoding="utf-8")
    ws = init_workspace(tmp_path / "double")
    ws, _ = add_sources(ws, [books], author="Одна", role="target")
    ws = write_settings(ws, "train", {**MICRO, "max_steps": 2})
    ws = write_settings(ws, "evaluate", {"prompts": 2, "prompt_tokens": 8, "extraction_prompts": 2})
    build_corpus(ws)
    train(ws, run="solo")
    report = evaluate_run(ws).report
    assert report["style_model"] is None and report["ceiling"]["target_share"] is None
    assert report["checkpoints"][0]["samples"]["target_share"] is None and report["recommended"] == "checkpoint-2"


def test_a_damaged_checkpoint_is_named_and_the_others_are_measured(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, {"max_steps": 8, "save_every": 4})
    ws = write_settings(ws, "evaluate", {"prompts": 3, "prompt_tokens": 12, "sample_tokens": 16, "extraction_prompts": 2})
    train(ws, run="r")
    weights = next((find_run(ws).folder / "checkpoint-4").glob("*.safetensors"))
    original = weights.read_bytes()
    weights.write_bytes(original[: len(original) // 2])  # a copy cut short

    result = evaluate_run(ws)
    assert [c["name"] for c in result.report["checkpoints"]] == ["checkpoint-8"]
    [damaged] = result.report["damaged_checkpoints"]
    assert damaged["name"] == "checkpoint-4" and str(weights.name) in damaged["problem"]
    assert result.recommended in (None, "checkpoint-8")
    assert "Not measured:" in (result.folder / "report.html").read_text(encoding="utf-8")
    assert weights.read_bytes() == original[: len(original) // 2]  # left as found: the user decides
