from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from training_fixtures import make_workspace

from dvoinik.generation.copyindex import INDEX_DIR, CopyIndex, SourceWork, open_copy_index, write_copy_index
from dvoinik.tokens import prepare_tokens


def _index(folder: Path, text: list[int], sources: list[SourceWork] | None = None) -> CopyIndex:
    sources = sources or [SourceWork("w", "A", "Work", 0, len(text))]
    return write_copy_index(np.asarray(text, dtype=np.uint16), sources, folder / "index", "test")


def _occurrences(text: list[int], gram: list[int]) -> int:
    n = len(gram)
    return sum(1 for i in range(len(text) - n + 1) if text[i : i + n] == gram)


def _longest_prefix_found(text: list[int], query: list[int]) -> int:
    length = 0
    while length < len(query) and _occurrences(text, query[: length + 1]):
        length += 1
    return length


@pytest.mark.parametrize("seed", range(6))
def test_answers_match_brute_force_on_random_texts(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    text = rng.integers(0, 4, size=800).tolist()
    index = _index(tmp_path, text)
    start = int(rng.integers(0, 700))
    query = rng.integers(0, 4, size=12).tolist() + text[start : start + 90] + rng.integers(0, 4, size=12).tolist()
    query += text[-75:]  # a span that runs to the very end of the text
    lengths, ranks = index.matching_statistics(query)
    assert lengths.tolist() == [_longest_prefix_found(text, query[i:]) for i in range(len(query))]
    for i, (length, rank) in enumerate(zip(lengths.tolist(), ranks.tolist())):
        position = int(index.suffixes[rank])
        assert text[position : position + length] == query[i : i + length]
    for n in (1, 2, 5):
        for i in range(0, len(query) - n, 7):
            assert index.count(query[i : i + n]) == _occurrences(text, query[i : i + n])
    contexts = np.array([query[i : i + 3] for i in range(0, 40, 5)])
    for context, following in zip(contexts.tolist(), index.successors(contexts)):
        expected = {text[i + 3] for i in range(len(text) - 3) if text[i : i + 3] == context}
        assert following.tolist() == sorted(expected)


def test_spans_are_maximal_and_name_their_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    first, second = rng.integers(100, 9000, size=3000).tolist(), rng.integers(100, 9000, size=2000).tolist()
    index = _index(tmp_path, first + second,
                   [SourceWork("a", "Автор", "Первая", 0, 3000), SourceWork("b", "Автор", "Вторая", 3000, 2000)])
    noise = rng.integers(9000, 9100, size=30).tolist()  # tokens the text never has
    query = noise + second[500:620] + noise + first[10:40] + noise
    spans = index.spans(query, min_tokens=25)
    assert [(s.start, s.length) for s in spans] == [(30, 120), (180, 30)]
    assert [index.source_at(s.position) for s in spans] == [(index.sources[1], 500), (index.sources[0], 10)]
    assert spans[0].occurrences == 1
    assert index.longest_span(query).length == 120
    assert index.spans(noise, 1) == [] and index.longest_span([]) is None
    assert index.contains(first[5:15]) and not index.contains(noise[:2])


def test_occurrences_walk_the_lcp_array(tmp_path: Path) -> None:
    phrase = [7, 8, 9, 10]
    text = [1, 2] + phrase + [3] + phrase + [4, 5] + phrase
    index = _index(tmp_path, text)
    span = index.longest_span([0] + phrase + [0])
    assert span.length == 4 and span.occurrences == 3
    assert sorted(index.occurrences(int(np.flatnonzero(np.asarray(index.suffixes) == span.position)[0]), 4)) == [2, 7, 13]


def test_built_from_a_token_set_reused_and_rebuilt(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    token_set, tokenizer = prepare_tokens(ws.corpus_dir, ws.tokens_dir, None, 400)
    messages: list[str] = []
    index = open_copy_index(token_set, messages.append)
    assert index.size == token_set.train_tokens and len(messages) == 1
    train_docs = [d for d in token_set.documents if d.split == "train"]
    assert [s.id for s in index.sources] == [d.id for d in sorted(
        train_docs, key=lambda d: [a.name for a in token_set.authors].index(d.author))]
    # Each source's tokens decode to that document of documents.jsonl.
    texts = {json.loads(line)["id"]: json.loads(line)["text"]
             for line in (ws.corpus_dir / "documents.jsonl").read_text(encoding="utf-8").splitlines()}
    for source in index.sources:
        ids = np.asarray(index.tokens[source.start : source.start + source.tokens]).tolist()
        assert tokenizer.decode(ids[:-1]) == texts[source.id] and ids[-1] == token_set.eos_id

    assert open_copy_index(token_set, messages.append).size == index.size and len(messages) == 1  # reused
    info = token_set.folder / INDEX_DIR / "index.json"
    info.write_text(info.read_text(encoding="utf-8").replace('"fingerprint": "', '"fingerprint": "stale'), encoding="utf-8")
    open_copy_index(token_set, messages.append)
    assert len(messages) == 2  # a stale index is rebuilt
    assert not [p for p in token_set.folder.iterdir() if p.name.startswith(".")]  # no temporary leftovers
