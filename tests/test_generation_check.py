"""`dvoinik check`: a planted passage is found and named however it is laid out; a paraphrase or a shuffle is not."""

from __future__ import annotations

import json
import random
import re
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from synthetic import synthetic_prose
from test_cli import assert_user_error, invoke
from training_fixtures import MICRO

from dvoinik.corpus.build import build_corpus, load_documents, read_text_file
from dvoinik.generation.check import CheckReport, check_file, find_copies
from dvoinik.generation.wordindex import open_word_index
from dvoinik.generation.words import normalise_words, normalised_text
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
    assert span.words == 60 and span.tokens >= 60 and span.work == title and span.author == "Цель"
    assert span.text == passage  # exactly the planted words, from the first word's first character to the last's last
    document = next(d for d in load_documents(trained.corpus_dir) if d.id == span.work_id)
    assert document.text[span.work_start : span.work_end] == span.text
    assert 0.3 < span.work_share < 0.7  # from the middle of the work
    assert report.longest == span and 0.2 < report.copied_share < 0.8 and report.notes == []

    result = invoke("-w", trained.root, "check", file)
    assert result.exit_code == 1, result.output
    assert title in result.stdout and "1 span(s) of 27+ words" in result.stdout
    as_json = invoke("-w", trained.root, "check", file, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["spans"][0]["work"] == title
    assert json.loads(as_json.stdout)["spans"][0]["words"] == 60
    in_tokens = invoke("-w", trained.root, "check", file, "--min-tokens", "50", "--json")
    assert in_tokens.exit_code == 1 and json.loads(in_tokens.stdout)["spans"][0]["tokens"] >= 50
    assert invoke("-w", trained.root, "check", file, "--min-words", "61").exit_code == 0


def test_a_paraphrase_has_nothing_long(trained: Workspace, tmp_path: Path) -> None:
    passage, _ = _passage(trained)
    file = tmp_path / "paraphrase.txt"
    file.write_text(_paraphrase(passage), encoding="utf-8")
    report = check_file(trained, file)
    assert report.spans == [] and report.longest.words <= 2
    result = invoke("-w", trained.root, "check", file)
    assert result.exit_code == 0, result.output
    assert "0 span(s)" in result.stdout
    assert invoke("-w", trained.root, "check", file, "--min-words", "2").exit_code == 1  # the threshold is the user's
    assert invoke("-w", trained.root, "check", file, "--min-tokens", "3").exit_code == 1


def test_check_refuses_bad_input(trained: Workspace, tmp_path: Path) -> None:
    assert_user_error(invoke("-w", trained.root, "check", tmp_path / "missing.txt"), "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n", encoding="utf-8")
    assert_user_error(invoke("-w", trained.root, "check", empty), "empty.txt")
    assert_user_error(invoke("-w", trained.root, "check", empty, "--run", "nope"), "no such run")
    assert_user_error(invoke("-w", trained.root, "check", empty, "--min-tokens", "0"), "--min-tokens 0")
    assert_user_error(invoke("-w", trained.root, "check", empty, "--min-words", "0"), "--min-words 0")
    assert_user_error(invoke("-w", trained.root, "check", empty, "--min-words", "5", "--min-tokens", "5"), "one unit")


# ---------------------------------------------------------------- real passages, laid out every way

CHEKHOV = ("aniuta", "albom", "akh_zuby", "tolstyi_i_tonkii", "khameleon")
GORKY = ("vyvod", "ma_alenkaia")
AROUND = ("Вечером того же дня в городе шёл мелкий дождь, и фонари на набережной горели тускло.",
          "Потом все разошлись по домам, и стало тихо, только собака лаяла где-то за рекой.")


@pytest.fixture(scope="module")
def classics(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Five stories of Chekhov (the target) and two of Gorky through the corpus build, with a two-step micro run."""
    root = tmp_path_factory.mktemp("classics")
    ws = init_workspace(root / "double")
    for author, name, works, role in (("chekhov", "Чехов", CHEKHOV, "target"), ("gorky", "Горький", GORKY, "influence")):
        folder = root / "books" / author
        folder.mkdir(parents=True)
        for work in works:
            shutil.copyfile(shared_corpus / "ru-classics" / author / f"{work}.txt.xz", folder / f"{work}.txt.xz")
        ws, _ = add_sources(ws, [folder], author=name, role=role)
    ws = write_settings(ws, "corpus", {"workers": 1})
    ws = write_settings(ws, "train", MICRO)
    build_corpus(ws)
    train(ws, run="c", overrides={"max_steps": 2})
    return ws


def _window(text: str, start: str, words: int = 60) -> str:
    """`words` words of `text` (as the measure counts them) from the first that begins `start`."""
    at = text.index(start)
    first, last = normalise_words(text[at:]).chars(0, words)
    return text[at + first : at + last]


def _passages(ws: Workspace) -> dict[str, tuple[str, str]]:
    """Two 60-word passages of training works: Chekhov's dialogue (line breaks, dashes, ё, hyphens) and Gorky's
    (quotes too). Title and text of each."""
    works = {d.title: d for d in load_documents(ws.corpus_dir)}
    assert works["АНЮТА"].split == works["МА-АЛЕНЬКАЯ!"].split == "train"
    return {"chekhov": ("АНЮТА", _window(works["АНЮТА"].text, "— Ах, с удовольствием!")),
            "gorky": ("МА-АЛЕНЬКАЯ!", _window(works["МА-АЛЕНЬКАЯ!"].text, "И то и это..."))}


def _hyphenated(text: str) -> str:
    """Every word of eight letters or more broken across a line end, as a typesetter would."""
    return re.sub(r"\b(\w{4})(\w{4,})\b", r"\1-\n\2", text)


FORMS: dict[str, Callable[[str], str]] = {
    "as is": lambda t: t,
    "re-wrapped": lambda t: "\n".join(textwrap.fill(p, 38) for p in t.split("\n\n")),
    "line breaks to spaces": lambda t: " ".join(t.split()),
    "straight quotes": lambda t: t.replace("«", '"').replace("»", '"'),
    "low-high quotes": lambda t: t.replace("«", "„").replace("»", "“"),
    "double hyphens": lambda t: t.replace("—", "--"),
    "hyphens": lambda t: t.replace("—", "-"),
    "ё removed": lambda t: t.replace("ё", "е").replace("Ё", "Е"),
    "hyphenated across lines": _hyphenated,
    "all at once": lambda t: _hyphenated(" ".join(t.replace("ё", "е").replace("—", "--").replace("«", '"').split())),
}


def _assert_found(report: CheckReport, planted: str, passage: str, title: str, ws: Workspace) -> None:
    words = normalised_text(passage).split()
    assert len(report.spans) == 1, report.spans
    span = report.spans[0]
    assert (span.work, span.words) == (title, len(words))
    assert normalised_text(span.text).split() == words and planted[span.start : span.end] == span.text
    work = next(d for d in load_documents(ws.corpus_dir) if d.id == span.work_id)
    assert normalised_text(work.text[span.work_start : span.work_end]).split() == words


@pytest.mark.parametrize("form", list(FORMS))
def test_a_real_passage_is_found_however_it_is_laid_out(classics: Workspace, tmp_path: Path, form: str) -> None:
    index = open_word_index(classics.root)
    passages = _passages(classics)
    assert form == "as is" or any(FORMS[form](p) != p for _, p in passages.values())  # every form changes something
    for author, (title, passage) in passages.items():
        changed = FORMS[form](passage)
        planted = f"{AROUND[0]} {changed}\n\n{AROUND[1]}\n"
        _assert_found(find_copies(index, None, planted, min_words=27), planted, passage, title, classics)  # as written
        file = tmp_path / f"{author}.txt"
        file.write_text(planted, encoding="utf-8")
        report = check_file(classics, file)  # read and cleaned as the corpus is: places are in the cleaned text
        _assert_found(report, read_text_file(file, classics.language), passage, title, classics)
        assert report.spans[0].tokens > 60


def test_two_joined_passages_are_two_spans_with_their_works(classics: Workspace, tmp_path: Path) -> None:
    (chekhov, first), (gorky, second) = _passages(classics).values()
    file = tmp_path / "joined.txt"
    file.write_text(f"{AROUND[0]} {' '.join(first.split())} {' '.join(second.split())} {AROUND[1]}", encoding="utf-8")
    report = check_file(classics, file)
    assert [(s.work, s.author, s.words) for s in report.spans] == [(chekhov, "Чехов", 60), (gorky, "Горький", 60)]


def test_shuffled_words_of_a_passage_are_not_found(classics: Workspace, tmp_path: Path) -> None:
    _, passage = _passages(classics)["chekhov"]
    words = passage.split()
    random.Random(3).shuffle(words)
    file = tmp_path / "shuffled.txt"
    file.write_text(" ".join(words), encoding="utf-8")
    report = check_file(classics, file)
    assert report.spans == [] and report.longest.words < 6


def test_a_dialogue_with_its_line_breaks_removed_fails_the_check(classics: Workspace, tmp_path: Path) -> None:
    """The issue's case: 60 words of «Анюта» pasted into other prose as one line (`check` found 38 tokens, exit 0)."""
    _, passage = _passages(classics)["chekhov"]
    file = tmp_path / "pasted.txt"
    file.write_text(f"{AROUND[0]} {' '.join(passage.split())} {AROUND[1]}\n", encoding="utf-8")
    result = invoke("-w", classics.root, "check", file)
    assert result.exit_code == 1, result.output
    assert "1 span(s) of 27+ words" in result.stdout and "longest 60 words" in result.stdout
    assert "АНЮТА" in result.stdout and "Чехов" in result.stdout


def test_without_a_run_a_file_is_checked_in_words(classics: Workspace, tmp_path: Path) -> None:
    words_only = init_workspace(tmp_path / "words-only")
    shutil.copytree(classics.corpus_dir, words_only.corpus_dir)
    _, passage = _passages(classics)["gorky"]
    file = tmp_path / "draft.txt"
    file.write_text(passage, encoding="utf-8")
    report = check_file(words_only, file)
    assert [s.words for s in report.spans] == [60] and report.spans[0].tokens is None and report.tokens is None
    assert "no run" in report.notes[0]


def test_a_corpus_rebuilt_after_the_run_is_named_in_a_note(classics: Workspace, tmp_path: Path) -> None:
    from dvoinik.workspace import load_workspace

    moved = tmp_path / "double"
    shutil.copytree(classics.root, moved, ignore=shutil.ignore_patterns("books"))
    ws = load_workspace(moved)
    report_json = ws.corpus_dir / "report.json"  # a corpus built anew (same texts, another report): a new fingerprint
    report_json.write_text(report_json.read_text(encoding="utf-8").replace("{", '{"rebuilt": true, ', 1), encoding="utf-8")
    _, passage = _passages(classics)["chekhov"]
    file = tmp_path / "draft.txt"
    file.write_text(passage, encoding="utf-8")
    report = check_file(ws, file)
    assert len(report.spans) == 1 and "rebuilt after run 'c'" in report.notes[0]
