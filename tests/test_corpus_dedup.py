"""Deduplication: whole works (exact, near, contained) and paragraphs repeated across works."""

from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np
import pytest
from synthetic import synthetic_prose

from dvoinik.corpus.dedup import (
    DedupSettings,
    DuplicateDocument,
    _Hasher,
    _sampled_jaccard,
    _shingle_document,
    drop_paragraphs,
    find_duplicate_documents,
    find_repeated_paragraphs,
    matching_key,
    split_paragraphs,
)

SETTINGS = DedupSettings()


def load_work(path: Path) -> str:
    """A corpus file, one paragraph per blank-line block (a crude stand-in for the cleaner).

    Files with one paragraph per line get a blank line after each; hard-wrapped files
    (nearly all lines under 86 characters) keep their blocks.
    """
    with lzma.open(path, "rt", encoding="utf-8") as f:
        text = f.read()
    lines = [line for line in text.split("\n") if line.strip()]
    if np.percentile([len(line) for line in lines], 90) >= 86:
        text = "\n\n".join(lines)
    return text


def rewrap(text: str, width: int = 61) -> str:
    """Hard-wrap every paragraph at `width`, as plain-text libraries do."""
    out = []
    for paragraph in split_paragraphs(text):
        lines, line = [], ""
        for word in paragraph.split():
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def ascii_punctuation(text: str) -> str:
    return text.replace("—", "--").replace("«", '"').replace("»", '"').replace("…", "...")


def without_yo(text: str) -> str:
    return text.replace("ё", "е").replace("Ё", "Е")


def drop_every(text: str, n: int) -> str:
    """The text with every n-th paragraph missing (n=20: 5%)."""
    return "\n\n".join(p for i, p in enumerate(split_paragraphs(text)) if i % n != n // 2)


def pairs(found: list[DuplicateDocument]) -> set[tuple[int, int, str]]:
    return {(d.removed, d.kept, d.kind) for d in found}


@pytest.fixture(scope="module")
def long_work(request: pytest.FixtureRequest) -> str:
    """Chekhov's "Дуэль" (~33k words, so shingles are sampled) or a synthetic stand-in."""
    try:
        corpus = request.getfixturevalue("shared_corpus")
    except pytest.skip.Exception:
        return "\n\n".join(synthetic_prose(seed, 60, dialogue=True) for seed in range(100, 110))
    return load_work(corpus / "ru-classics/chekhov/duel.txt.xz")


# --- matching key -----------------------------------------------------------------------


def test_matching_key_ignores_editions_differences() -> None:
    a = "Ещё раз — «кто-то» пришёл…\nИ уше́л."
    b = 'еще  раз -- "кто--то" пришел...   и ушел'
    assert matching_key(a) == matching_key(b) == "еще раз кто то пришел и ушел"
    assert matching_key("Ёлка, ЁЖ!") == "елка еж"
    assert matching_key("* * *") == ""
    assert matching_key("Он пришёл") != matching_key("Она пришла")


def test_vectorised_hashes_agree_with_matching_key(long_work: str) -> None:
    """Paragraph hashes group paragraphs exactly as their matching keys do."""
    variants = [long_work, ascii_punctuation(without_yo(rewrap(long_work)))]
    hasher = _Hasher(max(map(len, variants)) + 2)
    by_key: dict[str, set[int]] = {}
    for text in variants:
        hashes, words = hasher.paragraphs(text)
        paragraphs = split_paragraphs(text)
        assert len(hashes) == len(paragraphs)
        for paragraph, h, n in zip(paragraphs, hashes.tolist(), words.tolist()):
            key = matching_key(paragraph)
            assert n == len(key.split())
            if key:
                by_key.setdefault(key, set()).add(h)
    assert all(len(h) == 1 for h in by_key.values())
    assert len({next(iter(h)) for h in by_key.values()}) == len(by_key)  # no collisions
    # The whole-text word hashes equal the concatenation over paragraphs.
    assert np.array_equal(hasher.words(variants[0]), hasher.words(variants[1]))


def test_sampled_jaccard_estimates_the_full_one(long_work: str) -> None:
    other = drop_every(long_work, 5)
    hasher = _Hasher(len(long_work) + 2)
    x = _shingle_document(hasher.words(long_work), 5)
    y = _shingle_document(hasher.words(other), 5)
    assert x.level >= 1 or len(long_work) < 100_000  # the real work is long enough to be sampled
    full_x, full_y = set(x.shingles.tolist()), set(y.shingles.tolist())
    exact = len(full_x & full_y) / len(full_x | full_y)
    assert abs(_sampled_jaccard(x, y) - exact) < 0.03


# --- documents --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [rewrap, ascii_punctuation, without_yo, lambda t: ascii_punctuation(without_yo(rewrap(t)))],
    ids=["rewrapped", "ascii-dashes-quotes", "e-for-yo", "all-three"],
)
def test_edition_variants_are_exact_duplicates(long_work: str, variant) -> None:
    texts = [long_work, synthetic_prose(1, 60, dialogue=True), variant(long_work)]
    assert variant(long_work) != long_work
    found = find_duplicate_documents(texts, SETTINGS)
    assert found == [DuplicateDocument(2, 0, "exact", 1.0)]


@pytest.mark.parametrize("missing_every", [20, 12])
def test_work_with_paragraphs_missing_is_a_near_duplicate(long_work: str, missing_every: int) -> None:
    shortened = ascii_punctuation(without_yo(rewrap(drop_every(long_work, missing_every))))
    texts = [synthetic_prose(2, 60, dialogue=True), long_work, synthetic_prose(3, 60, dialogue=True), shortened]
    found = find_duplicate_documents(texts, SETTINGS)
    assert pairs(found) == {(3, 1, "near")}
    assert 0.8 <= found[0].similarity < 1.0


def test_same_text_under_two_authors_keeps_the_first(long_work: str) -> None:
    """The caller's order decides: the target author's copy comes first and stays."""
    texts = [synthetic_prose(4, 60, dialogue=True), drop_every(long_work, 20), long_work]
    assert pairs(find_duplicate_documents(texts, SETTINGS)) == {(2, 1, "near")}
    texts = [long_work, synthetic_prose(4, 60, dialogue=True), long_work]
    assert pairs(find_duplicate_documents(texts, SETTINGS)) == {(2, 0, "exact")}
    # A second copy of a near duplicate is reported against the kept work, not the copy.
    shortened = drop_every(long_work, 20)
    found = find_duplicate_documents([long_work, shortened, rewrap(shortened)], SETTINGS)
    assert pairs(found) == {(1, 0, "near"), (2, 0, "near")}
    assert found[0].similarity == found[1].similarity


def test_excerpt_is_contained_in_its_work(long_work: str) -> None:
    paragraphs = split_paragraphs(long_work)
    excerpt = rewrap("\n\n".join(paragraphs[len(paragraphs) // 3 : len(paragraphs) // 3 + len(paragraphs) // 8]))
    found = find_duplicate_documents([long_work, synthetic_prose(5, 60, dialogue=True), excerpt], SETTINGS)
    assert pairs(found) == {(2, 0, "contained")}
    assert found[0].similarity >= 0.9
    # Whatever the order: an excerpt filed first (the target's) still goes, its book stays.
    assert pairs(find_duplicate_documents([excerpt, synthetic_prose(5, 60, dialogue=True), long_work], SETTINGS)) \
        == {(0, 2, "contained")}


def test_a_fragment_of_a_fragment_and_its_copies_point_at_the_kept_work(long_work: str) -> None:
    paragraphs = split_paragraphs(long_work)
    half = "\n\n".join(paragraphs[: len(paragraphs) // 2])
    quarter = "\n\n".join(paragraphs[: len(paragraphs) // 4])
    found = find_duplicate_documents([quarter, rewrap(quarter), half, long_work], SETTINGS)
    assert pairs(found) == {(0, 3, "contained"), (1, 3, "exact"), (2, 3, "contained")}


def test_similarity_below_the_threshold_is_not_a_duplicate(long_work: str) -> None:
    """A revision sharing ~72% of its text (Jaccard ~0.55, containment ~0.72) stays."""
    paragraphs = split_paragraphs(long_work)
    sizes = np.cumsum([len(p.split()) for p in paragraphs])
    cut = int(np.searchsorted(sizes, 0.72 * sizes[-1]))
    foreign = split_paragraphs("\n\n".join(synthetic_prose(s, 60, dialogue=True) for s in range(60, 100)))
    foreign_sizes = np.cumsum([len(p.split()) for p in foreign])
    take = int(np.searchsorted(foreign_sizes, sizes[-1] - sizes[cut]))
    revision = "\n\n".join(paragraphs[:cut] + foreign[:take])
    assert find_duplicate_documents([long_work, revision], SETTINGS) == []
    found = find_duplicate_documents([long_work, revision], DedupSettings(near_threshold=0.5))
    assert pairs(found) == {(1, 0, "near")}
    assert 0.5 <= found[0].similarity < 0.8
    found = find_duplicate_documents([long_work, revision], DedupSettings(containment_threshold=0.7))
    assert [(d.removed, d.kind) for d in found] == [(1, "contained")] and 0.7 <= found[0].similarity < 0.8


def test_different_works_are_not_duplicates() -> None:
    texts = [synthetic_prose(seed, 60, dialogue=True) for seed in range(6, 12)]
    # Sharing a few paragraphs (a reprinted preface) does not make works duplicates.
    texts.append(split_paragraphs(texts[0])[0] + "\n\n" + synthetic_prose(12, 60, dialogue=True))
    assert find_duplicate_documents(texts, SETTINGS) == []


def test_different_works_of_one_author_are_not_duplicates(shared_corpus: Path) -> None:
    chekhov = shared_corpus / "ru-classics/chekhov"
    # Two stories by Chekhov with one title, "Беда", from 1886 and 1887.
    texts = [load_work(chekhov / name) for name in ("beda_1887.txt.xz", "beda_1886.txt.xz", "aniuta.txt.xz")]
    assert find_duplicate_documents(texts, SETTINGS) == []
    assert find_duplicate_documents(texts + [rewrap(texts[1])], SETTINGS) == [DuplicateDocument(3, 1, "exact", 1.0)]


def test_duplicates_are_deterministic(long_work: str) -> None:
    texts = [long_work, synthetic_prose(13, 60, dialogue=True), drop_every(long_work, 15), synthetic_prose(14, 60, dialogue=True), long_work[: len(long_work) // 4]]
    first = find_duplicate_documents(texts, SETTINGS)
    assert first == find_duplicate_documents(list(texts), SETTINGS)
    assert {d.removed for d in first} == {2, 4}
    # Another seed changes the permutations, not the verified outcome.
    other = find_duplicate_documents(texts, DedupSettings(seed=7))
    assert pairs(other) == pairs(first)


def test_short_and_empty_texts() -> None:
    texts = ["", "Да.", "да", "Он пришёл домой.", ""]
    found = find_duplicate_documents(texts, SETTINGS)
    assert pairs(found) == {(2, 1, "exact"), (4, 0, "exact")}
    assert find_duplicate_documents([], SETTINGS) == []
    assert find_repeated_paragraphs(["", "* * *", "* * *", "* * *"], set(), SETTINGS) == []
    assert find_repeated_paragraphs([STORY, STORY], {0, 1}, SETTINGS) == []


# --- paragraphs -------------------------------------------------------------------------

STORY = (
    "Старик долго смотрел на реку, на тёмную воду под мостом, и думал о том, "
    "как много лет прошло с тех пор, когда он впервые пришёл сюда мальчиком."
)


def by_kind(found, kind: str) -> set[tuple[int, str]]:
    return {(p.document, matching_key(p.text)) for p in found if p.kind == kind}


def test_long_paragraph_from_an_earlier_work_is_repeated() -> None:
    works = [synthetic_prose(s, 10, dialogue=True) for s in range(20, 23)]
    texts = [
        works[0] + "\n\n" + STORY,
        works[1] + "\n\n" + rewrap(ascii_punctuation(without_yo(STORY)), 30),
        works[2] + "\n\n" + STORY + "\n\n" + STORY,  # twice here: a refrain, not a repeat
    ]
    found = find_repeated_paragraphs(texts, set(), SETTINGS)
    repeated = [p for p in found if p.kind == "repeated"]
    assert {(p.document, p.first_seen, p.count) for p in repeated} == {(1, 0, 3), (2, 0, 3)}
    assert all(matching_key(p.text) == matching_key(STORY) for p in repeated)
    assert not [p for p in found if p.kind == "boilerplate"]
    # Within one work a repeated paragraph is the author's refrain.
    assert find_repeated_paragraphs([works[0] + "\n\n" + STORY + "\n\n" + STORY], set(), SETTINGS) == []


def test_skipped_works_neither_lose_nor_count_paragraphs() -> None:
    works = [synthetic_prose(s, 10, dialogue=True) for s in range(30, 33)]
    texts = [works[0] + "\n\n" + STORY, works[1] + "\n\n" + STORY, works[2] + "\n\n" + STORY]
    found = find_repeated_paragraphs(texts, {0}, SETTINGS)
    assert {(p.document, p.kind, p.first_seen, p.count) for p in found} == {(2, "repeated", 1, 2)}


def test_boilerplate_needs_enough_works_and_spares_the_authors_lines() -> None:
    authored = ["— Да.", "— Что? — спросил он.", "* * *", "II", "Глава первая", "Конец", "Да.", "Нет!", "Боже мой!", "Х", "Он засмеялся."]
    junk = ["Источник: http://az.lib.ru/", "Моя дорогая (франц.).", "Навигация"]
    works = [synthetic_prose(s, 8, dialogue=True) for s in range(40, 44)]
    texts = ["\n\n".join([junk[0], *authored, w, junk[1], junk[1]]) for w in works[:3]]
    texts.append("\n\n".join([works[3], junk[2], junk[0]]))
    texts.append("\n\n".join([synthetic_prose(44, 8, dialogue=True), junk[2]]))  # "Навигация" in two works only
    found = find_repeated_paragraphs(texts, set(), SETTINGS)
    boiler = by_kind(found, "boilerplate")
    source = matching_key(junk[0])
    rating = matching_key(junk[1])
    assert boiler == {(0, source), (1, source), (2, source), (3, source), (0, rating), (1, rating), (2, rating)}
    assert all(p.count == (4 if matching_key(p.text) == source else 3) and p.first_seen is None for p in found)
    # The fourth work's copy of a rating is a different work; two works are not enough.
    assert not any(matching_key(p.text) == matching_key(junk[2]) for p in found)


def test_short_lines_in_the_middle_of_works_are_prose_not_boilerplate() -> None:
    """Dialogue leads and addresses recur across an author's works; only edges hold site furniture."""
    prose = ["Он засмеялся:", "Милостивый государь,", "Я", "СКАНДАЛ"]
    texts = []
    for seed in range(60, 65):
        head, tail = synthetic_prose(seed, 14, dialogue=True), synthetic_prose(seed + 100, 14, dialogue=True)
        texts.append("\n\n".join(["Оцените этот текст", head, *prose, tail]))
    found = find_repeated_paragraphs(texts, set(), SETTINGS)
    assert {matching_key(p.text) for p in found} == {"оцените этот текст"}
    assert sorted(p.document for p in found) == list(range(5))
    assert all(p.count == 5 for p in found)
    # A narrow edge setting misses a header only when it lies deeper than the edge.
    deep = ["\n\n".join([synthetic_prose(seed, 14, dialogue=True), "Оцените этот текст", synthetic_prose(seed + 100, 14, dialogue=True)]) for seed in range(70, 74)]
    assert find_repeated_paragraphs(deep, set(), DedupSettings(boilerplate_edge_paragraphs=3)) == []
    assert len(find_repeated_paragraphs(deep, set(), DedupSettings(boilerplate_edge_paragraphs=15))) == 4


def test_drop_paragraphs_by_matching_key() -> None:
    text = "Источник: «lib.ru»\n\n— Да.\n\n* * *\n\nОцените этот текст\n\n* * *\n\nКонец"
    dropped = drop_paragraphs(text, ['Источник: "lib.ru"', "оцените  этот\nтекст"])
    assert dropped == "— Да.\n\n* * *\n\n* * *\n\nКонец"
    assert drop_paragraphs(text, []) is text
    assert drop_paragraphs(text, ["Нет такого"]) == text
    assert drop_paragraphs(text, ["* * *"]) == "Источник: «lib.ru»\n\n— Да.\n\nОцените этот текст\n\nКонец"


def test_found_paragraphs_drop_cleanly() -> None:
    """What find_repeated_paragraphs reports, drop_paragraphs removes (every copy)."""
    works = [synthetic_prose(s, 6, dialogue=True) for s in range(50, 53)]
    texts = [f"{w}\n\n{STORY}\n\nОцените этот текст" for w in works]
    texts[2] = texts[2] + "\n\n" + STORY
    found = find_repeated_paragraphs(texts, set(), SETTINGS)
    for i, text in enumerate(texts):
        out = drop_paragraphs(text, {p.text for p in found if p.document == i})
        assert "Оцените" not in out
        assert out.count("Старик долго") == (1 if i == 0 else 0)
        assert out.startswith(works[i])


# --- the whole shared corpus ------------------------------------------------------------


def test_whole_corpus_finds_only_real_duplicates(shared_corpus: Path) -> None:
    """256 distinct works (~5M words): only Gorky's "В людях" file, which holds the whole
    trilogy, contains "Детство" and "Мои университеты"."""
    paths = sorted((shared_corpus / "ru-classics").glob("*/*.txt.xz"))
    texts = [load_work(p) for p in paths]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    texts, names = [texts[i] for i in order], [paths[i].relative_to(shared_corpus / "ru-classics").as_posix() for i in order]

    found = find_duplicate_documents(texts, SETTINGS)
    paragraphs = find_repeated_paragraphs(texts, {d.removed for d in found}, SETTINGS)

    flagged = {(names[d.removed], names[d.kept]) for d in found}
    assert flagged == {
        ("gorky/detstvo.txt.xz", "gorky/v_liudiakh.txt.xz"),
        ("gorky/moi_universitety.txt.xz", "gorky/v_liudiakh.txt.xz"),
    }
    assert all(d.similarity >= 0.9 for d in found)
    # The raw files repeat little across works: author lines, "Примечания", subtitles.
    boilerplate = {matching_key(p.text) for p in paragraphs if p.kind == "boilerplate"}
    assert {"антон чехов", "примечания", "лев николаевич толстой"} <= boilerplate
    assert len(boilerplate) < 60
    assert len(paragraphs) < 400
    # Frequent lines of the authors' prose stay: dialogue, numerals, short sentences.
    assert not boilerplate & {"да", "нет", "ii", "глава первая", "конец", "он засмеялся", "я", "милостивый государь"}


# --- excerpts through the corpus stage ------------------------------------------------------


@pytest.mark.parametrize("excerpt_role", ["influence", "target"])
def test_a_real_excerpt_filed_as_its_own_file_is_removed(shared_corpus: Path, tmp_path: Path, excerpt_role: str) -> None:
    """The first 2,500 characters of a Chekhov story, as a publisher's free fragment, under another author."""
    from dvoinik.corpus.build import build_corpus
    from dvoinik.workspace import add_sources, init_workspace, write_settings

    chekhov = tmp_path / "chekhov"
    chekhov.mkdir()
    for name in ("anna_na_shee", "aniuta", "beda_1886"):
        (chekhov / f"{name}.txt.xz").write_bytes((shared_corpus / f"ru-classics/chekhov/{name}.txt.xz").read_bytes())
    with lzma.open(shared_corpus / "ru-classics/chekhov/anna_na_shee.txt.xz", "rt", encoding="utf-8") as f:
        story = f.read()
    fragment = tmp_path / "fragment.txt"
    fragment.write_text(story[:2500], encoding="utf-8")
    ws = init_workspace(tmp_path / "double")
    ws, _ = add_sources(ws, [chekhov], author="Чехов", role="influence" if excerpt_role == "target" else "target")
    ws, _ = add_sources(ws, [fragment], author="Издатель", role=excerpt_role)
    ws = write_settings(ws, "corpus", {"workers": 1})
    report = build_corpus(ws).report
    [duplicate] = report["duplicates"]
    assert duplicate["removed"]["source"] == "fragment.txt" and duplicate["kind"] == "contained"
    assert duplicate["duplicate_of"]["source"].endswith("anna_na_shee.txt.xz") and duplicate["similarity"] >= 0.95
    assert report["authors"]["Издатель"]["train_works"] + report["authors"]["Издатель"]["val_works"] == 0
    markdown = (ws.corpus_dir / "report.md").read_text(encoding="utf-8")
    assert "contained" in markdown and "fragment.txt" in markdown
