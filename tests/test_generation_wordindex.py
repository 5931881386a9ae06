"""The word index: copies found as normalised words, mapped back to their works and characters; built, reused, rebuilt."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from synthetic import synthetic_prose
from training_fixtures import make_workspace

from dvoinik.generation.copyindex import CopyIndexError
from dvoinik.generation.wordindex import (
    WORD_INDEX_DIR,
    WordIndex,
    built_from_run_corpus,
    open_word_index,
    write_word_index,
)
from dvoinik.generation.words import normalised_text
from dvoinik.tokens import prepare_tokens

FIRST = "Анюта быстро накинула себе на плечи шерстяной платок.\n\n— Можно войти? — послышалось за дверью. Вошёл художник."
SECOND = "Кто-нибудь из них живёт в Париже, два докторами, четвёртый художник, а пятый даже профессор."


def _works() -> list[SimpleNamespace]:
    return [SimpleNamespace(id="a", author="Чехов", title="Анюта", text=FIRST),
            SimpleNamespace(id="b", author="Чехов", title="Другая", text=SECOND)]


@pytest.fixture()
def index(tmp_path: Path) -> WordIndex:
    return write_word_index(_works(), tmp_path / "words", "test")


def test_a_reformatted_copy_is_one_span_with_its_work_and_place(index: WordIndex) -> None:
    copied = 'Кто-\nнибудь из них живет в Париже - два докторами,\nчетвертый ХУДОЖНИК'
    text = f"Совсем другие слова. {copied}; и снова другие."
    matches = index.match(text)
    [span] = index.spans(matches, 5)
    assert span.words == 10 and (span.work, span.author, span.work_id) == ("Другая", "Чехов", "b")
    assert text[span.text_start : span.text_end] == copied
    assert SECOND[span.work_start : span.work_end] == "Кто-нибудь из них живёт в Париже, два докторами, четвёртый художник"
    assert span.work_share == 0 and span.work_chars == len(SECOND) and span.occurrences == 1
    assert index.longest(matches) == span


def test_a_span_never_runs_from_one_work_into_the_next(index: WordIndex) -> None:
    text = "послышалось за дверью Вошел художник Кто-нибудь из них"  # the end of one work, the start of the next
    spans = index.spans(index.match(text), 1)
    assert [(s.work, s.words) for s in spans] == [("Анюта", 5), ("Другая", 3)]
    assert [s.text_start for s in spans] == [0, text.index("Кто")]


def test_unknown_words_and_shuffled_words_find_nothing_long(index: WordIndex) -> None:
    assert index.longest(index.match("Зеленые бегемоты танцуют")) is None
    shuffled = "платок плечи на себе накинула быстро Анюта шерстяной"
    assert index.longest(index.match(shuffled)).words <= 2
    assert index.spans(index.match(""), 1) == [] and index.match("").longest == 0


def test_built_on_first_use_reused_and_rebuilt_when_the_corpus_changes(tmp_path: Path) -> None:
    with pytest.raises(CopyIndexError, match="no corpus built yet"):
        open_word_index(tmp_path)
    ws = make_workspace(tmp_path)
    messages: list[str] = []
    index = open_word_index(ws.root, messages.append)
    assert messages and (ws.root / WORD_INDEX_DIR / "index.json").is_file()
    documents = [json.loads(line) for line in (ws.corpus_dir / "documents.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [d for d in documents if d["split"] == "train"]
    assert [s.id for s in index.sources] == [d["id"] for d in train]
    # Every training work is found whole, from its first word to its last, at its own place.
    for document in train:
        matches = index.match(document["text"])
        span = index.longest(matches)
        assert span.words == len(matches.words) and span.work_id == document["id"]
        assert (span.work_start, span.work_end) == (span.text_start, span.text_end)

    count = len(messages)
    assert open_word_index(ws.root, messages.append).size == index.size and len(messages) == count  # reused
    token_set, _ = prepare_tokens(ws.corpus_dir, ws.tokens_dir, None, 400)
    assert built_from_run_corpus(index, token_set)

    # A rebuilt corpus (here: one more work) is a new index; the token set made before no longer matches it.
    (tmp_path / "books" / "target" / "work9.txt").write_text(synthetic_prose(77, 30), encoding="utf-8")
    from dvoinik.corpus.build import build_corpus

    build_corpus(ws)
    rebuilt = open_word_index(ws.root, messages.append)
    assert len(messages) > count and not built_from_run_corpus(rebuilt, token_set)
    assert not [p for p in ws.root.iterdir() if p.name.startswith(f".{WORD_INDEX_DIR}")]  # no temporary leftovers


def test_the_words_of_the_index_are_the_normaliser_s(index: WordIndex) -> None:
    assert set(index.vocabulary) == set(normalised_text(FIRST + " " + SECOND).split())
