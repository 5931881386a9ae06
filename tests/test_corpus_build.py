"""Building a corpus: real texts end to end, bad input, the split by work, the mix, atomic writes."""

from __future__ import annotations

import dataclasses
import errno
import gzip
import hashlib
import json
import lzma
import os
import random
import shutil
import stat
import time
from collections import Counter
from pathlib import Path

import pytest
from synthetic import synthetic_prose, synthetic_words

from dvoinik.corpus import build as buildmod
from dvoinik.corpus.build import (
    DOCUMENTS_FILE,
    REPORT_JSON,
    REPORT_MD,
    BuildResult,
    CleanedWork,
    CorpusError,
    Document,
    build_corpus,
    corpus_warnings,
    document_id,
    load_documents,
    mix_shares,
    split_by_work,
)
from dvoinik.faults import DiskFullError
from dvoinik.workspace import CorpusSettings, Workspace, add_sources, init_workspace, load_workspace

FIELDS = {"id", "author", "role", "title", "source", "split", "text"}
ANDREEV = ("iuda_iskariot", "khristiane", "tak_bylo", "voskresenie_vsekh_mertvykh")
CHEKHOV = ("agafia", "albom", "aniuta")
GORKY = ("chelovek", "delo_s_zastezhkami", "chelkash")


# --- helpers ----------------------------------------------------------------------------


def copy_works(corpus: Path, author: str, works: tuple[str, ...], dest: Path) -> Path:
    """dest/<author>/<work>.txt.xz copied from the shared corpus; returns the folder."""
    folder = dest / author
    folder.mkdir(parents=True, exist_ok=True)
    for work in works:
        shutil.copyfile(corpus / "ru-classics" / author / f"{work}.txt.xz", folder / f"{work}.txt.xz")
    return folder


def with_settings(ws: Workspace, **changes) -> Workspace:
    return dataclasses.replace(ws, corpus=dataclasses.replace(ws.corpus, **changes))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: content hash (or link target), mtime and mode, without following links."""
    state = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            content = os.readlink(path)
        elif path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()  # root reads even mode 000
        else:
            content = None
        state[str(path)] = (content, st.st_mtime_ns, st.st_mode)
    return state


def stray_entries(root: Path) -> list[str]:
    """Staging (.corpus.*.tmp) or backup (.corpus.old) folders a build left beside corpus/."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".corpus"))


def docs_by_source(result: BuildResult) -> dict[str, Document]:
    return {d.source: d for d in result.documents}


def simple_workspace(tmp_path: Path, texts: dict[str, str], author: str = "Автор", role: str = "target") -> Workspace:
    """A workspace with one source folder holding `texts` (file name -> text), one worker."""
    folder = tmp_path / "books" / "texts"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    ws = init_workspace(tmp_path / "double")
    ws, _ = add_sources(ws, [folder], author=author, role=role)
    return with_settings(ws, workers=1)


# --- a real subset, built once ----------------------------------------------------------


def real_subset_workspace(corpus: Path, root: Path, books: Path) -> Workspace:
    """Four Andreev works (target) plus his two other editions of "Иуда Искариот"; three works
    each by Chekhov (plus two FB2 editions of them) and Gorky; Gogol's EPUB; Bely's web page."""
    formats = corpus / "formats"
    ws = init_workspace(root)
    ws, _ = add_sources(
        ws,
        [
            copy_works(corpus, "andreev", ANDREEV, books),
            formats / "andreev_iuda_iskariot.libru.cp1251.txt",
            formats / "andreev_iuda_iskariot.fb2.zip",
        ],
        author="Андреев",
        role="target",
    )
    ws, _ = add_sources(
        ws,
        [
            copy_works(corpus, "chekhov", CHEKHOV, books),
            formats / "chekhov_two_stories.fb2",
            formats / "chekhov_aniuta.cp1251.fb2",
        ],
        author="Чехов",
    )
    ws, _ = add_sources(ws, [copy_works(corpus, "gorky", GORKY, books)], author="Горький", weight=2.5)
    ws, _ = add_sources(ws, [formats / "gogol_sample.epub"], author="Гоголь")
    ws, _ = add_sources(ws, [formats / "bely_kust.az_lib_ru_page.cp1251.txt"], author="Белый")
    return ws


@pytest.fixture(scope="module")
def real(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    base = tmp_path_factory.mktemp("real")
    ws = real_subset_workspace(shared_corpus, base / "double", base / "books")
    return build_corpus(ws)


def test_real_subset_documents_file(real: BuildResult) -> None:
    rows = read_jsonl(real.corpus_dir / DOCUMENTS_FILE)
    assert len(rows) == len(real.documents) == real.report["totals"]["documents"] >= 10
    assert all(set(row) == FIELDS for row in rows)
    assert len({row["id"] for row in rows}) == len(rows)
    assert {row["split"] for row in rows} == {"train", "val"}
    assert all(row["text"].strip() and row["title"].strip() for row in rows)
    roles = {row["author"]: row["role"] for row in rows}
    assert roles == {"Андреев": "target"} | {a: "influence" for a in ("Чехов", "Горький", "Гоголь", "Белый")}
    assert load_documents(real.corpus_dir) == real.documents
    assert [Document(**row) for row in rows] == real.documents
    # The three files and nothing else; no staging or backup folder left beside them.
    assert sorted(p.name for p in real.corpus_dir.iterdir()) == sorted([DOCUMENTS_FILE, REPORT_JSON, REPORT_MD])
    assert stray_entries(real.corpus_dir.parent) == []


def test_real_subset_every_format_read(real: BuildResult) -> None:
    files = real.report["files"]
    assert files["listed"] == len(ANDREEV) + 2 + len(CHEKHOV) + 2 + len(GORKY) + 2
    assert files["skipped"] == []
    assert {"txt", "fb2", "epub"} <= set(files["formats"])
    assert files["encodings"].get("cp1251", 0) >= 3  # the libru text, the web page, the cp1251 FB2
    sources = docs_by_source(real)
    assert "gogol_sample.epub" in sources and "bely_kust.az_lib_ru_page.cp1251.txt" in sources
    # FB2 editorial notes are left out and said so.
    assert any("notes body" in n["reason"] for n in files["notes"] if n["source"] == "chekhov_two_stories.fb2")


def test_other_editions_of_a_work_are_duplicates_of_it(real: BuildResult) -> None:
    canonical = "andreev/iuda_iskariot.txt.xz"
    dups = {d["removed"]["source"]: d for d in real.report["duplicates"]}
    libru = dups["andreev_iuda_iskariot.libru.cp1251.txt"]
    fb2 = dups["andreev_iuda_iskariot.fb2.zip!andreev_iuda_iskariot.fb2"]
    threshold = CorpusSettings().near_duplicate_threshold
    for dup in (libru, fb2):
        assert dup["duplicate_of"]["source"] == canonical
        assert dup["kind"] in ("exact", "near")
        assert threshold <= dup["similarity"] <= 1.0
        assert dup["removed"]["author"] == dup["duplicate_of"]["author"] == "Андреев"
    sources = docs_by_source(real)
    assert canonical in sources
    assert dups["andreev_iuda_iskariot.fb2.zip!andreev_iuda_iskariot.fb2"]["duplicate_of"]["id"] == sources[canonical].id
    assert not any("iuda" in s for s in sources if s != canonical)  # one Judas, not three


def test_fb2_sections_are_duplicates_of_the_separate_works(real: BuildResult) -> None:
    dups = {d["removed"]["source"]: d["duplicate_of"]["source"] for d in real.report["duplicates"]}
    assert dups["chekhov_two_stories.fb2#1"] == "chekhov/agafia.txt.xz"
    assert dups["chekhov_two_stories.fb2#2"] == "chekhov/albom.txt.xz"
    assert dups["chekhov_aniuta.cp1251.fb2"] == "chekhov/aniuta.txt.xz"
    assert len(real.report["duplicates"]) == 5
    kept = set(docs_by_source(real))
    assert not kept & set(dups)


def test_real_subset_report_json(real: BuildResult) -> None:
    report = json.loads((real.corpus_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert report == json.loads(json.dumps(real.report))
    for key in ("files", "duplicates", "cleaning", "authors", "mix", "totals", "settings", "sources", "speed"):
        assert key in report, key
    docs = real.documents
    totals = report["totals"]
    assert totals["train_documents"] + totals["val_documents"] == totals["documents"] == len(docs)
    assert totals["chars"] == sum(len(d.text) for d in docs)
    assert totals["words"] == sum(len(d.text.split()) for d in docs)
    for author, row in report["authors"].items():
        assert row["train_works"] == sum(1 for d in docs if d.author == author and d.split == "train")
        assert row["val_works"] == sum(1 for d in docs if d.author == author and d.split == "val")
        assert row["train_chars"] == report["mix"][author]["train_chars"]
    assert set(report["cleaning"]) == set(report["authors"])
    assert report["cleaning"]["Андреев"].get("double_hyphens", 0) > 0  # "--" dashes in Andreev's texts


def test_real_subset_report_md_names_the_duplicates(real: BuildResult) -> None:
    md = (real.corpus_dir / REPORT_MD).read_text(encoding="utf-8")
    assert md.startswith("# Corpus report: ")
    section = md.split("## Duplicates", 1)[1].split("## Cleaning", 1)[0]
    for dup in real.report["duplicates"]:
        assert f"`{dup['removed']['source']}`" in section
        assert f"`{dup['duplicate_of']['source']}`" in section
    assert section.count("| near |") + section.count("| exact |") == 5
    for author in real.report["authors"]:
        assert f"| {author} |" in md


# --- the split ---------------------------------------------------------------------------


def test_real_subset_holds_out_whole_works(real: BuildResult) -> None:
    docs = real.documents
    target_val = [d for d in docs if d.role == "target" and d.split == "val"]
    assert len(target_val) >= 1
    for author in {d.author for d in docs}:
        assert any(d.split == "train" for d in docs if d.author == author), author  # never all held out
    # Gorky has three works: an influence with three or more gives one to validation.
    assert sum(1 for d in docs if d.author == "Горький" and d.split == "val") >= 1
    # A source is one document, in one split.
    assert len({d.source for d in docs}) == len(docs)


def test_val_documents_are_whole_works(shared_corpus: Path, tmp_path: Path) -> None:
    """A held-out work has exactly the text it has when nothing is held out."""
    ws = init_workspace(tmp_path / "double")
    ws, _ = add_sources(ws, [copy_works(shared_corpus, "andreev", ANDREEV, tmp_path / "books")], author="A", role="target")
    split = build_corpus(with_settings(ws, workers=1))
    val = [d for d in split.documents if d.split == "val"]
    assert val
    everything = build_corpus(with_settings(ws, workers=1, val_fraction=0.0, min_val_works=0))
    assert {d.split for d in everything.documents} == {"train"}
    whole = docs_by_source(everything)
    for doc in split.documents:
        assert doc.text == whole[doc.source].text and doc.id == whole[doc.source].id


def test_same_seed_same_bytes_wherever_and_however_built(shared_corpus: Path, tmp_path: Path) -> None:
    first = real_subset_workspace(shared_corpus, tmp_path / "one", tmp_path / "books")
    build_corpus(with_settings(first, workers=2))
    expected = (first.corpus_dir / DOCUMENTS_FILE).read_bytes()
    build_corpus(with_settings(first, workers=1))  # again, in one process
    assert (first.corpus_dir / DOCUMENTS_FILE).read_bytes() == expected
    # Another workspace elsewhere, the same sources recorded in another order: same documents.
    second = init_workspace(tmp_path / "elsewhere" / "two")
    for source in reversed(first.sources):
        second, _ = add_sources(second, [source.path], author=source.author, role=source.role, weight=source.weight)
    build_corpus(with_settings(second, workers=2))
    assert (second.corpus_dir / DOCUMENTS_FILE).read_bytes() == expected


def work(source: str, author: str = "A", role: str = "target", words: int = 1000) -> CleanedWork:
    return CleanedWork(source, author, role, source, "txt", "utf-8", " ".join(["слово"] * words), Counter())


def split_of(works: list[CleanedWork], settings: CorpusSettings) -> dict[str, str]:
    return split_by_work(works, [document_id(w.source) for w in works], settings)


def test_split_by_work_rules() -> None:
    settings = CorpusSettings()
    # A target author with two works holds one out, even when each is over the budget.
    assert sorted(split_of([work("a"), work("b")], settings).values()) == ["train", "val"]
    # One work: nothing to hold out.
    assert list(split_of([work("a")], settings).values()) == ["train"]
    # An influence author holds out nothing with two works, one with three of equal size.
    assert set(split_of([work("a", role="influence"), work("b", role="influence")], settings).values()) == {"train"}
    three = split_of([work(s, role="influence") for s in "abc"], settings)
    assert sorted(three.values()) == ["train", "train", "val"]
    # min_val_works is honoured; at least one work always stays in training.
    many = split_of([work(s) for s in "abcde"], dataclasses.replace(settings, min_val_works=3))
    assert Counter(many.values()) == {"val": 3, "train": 2}
    assert Counter(split_of([work(s) for s in "ab"], dataclasses.replace(settings, min_val_works=5)).values()) == {
        "val": 1, "train": 1
    }
    # Nothing held out when neither a share nor a count is asked for.
    none = split_of([work(s) for s in "abcd"], dataclasses.replace(settings, val_fraction=0.0, min_val_works=0))
    assert set(none.values()) == {"train"}


def test_split_by_work_close_to_val_fraction() -> None:
    works = [work(f"w{i:02d}", words=1000) for i in range(40)]
    split = split_of(works, CorpusSettings(val_fraction=0.2))
    assert Counter(split.values())["val"] == 8


def test_split_by_work_ignores_input_order_and_depends_on_the_seed() -> None:
    works = [work(f"w{i}", words=500 + 37 * i) for i in range(12)] + [
        work(f"i{i}", author="B", role="influence", words=800) for i in range(5)
    ]
    settings = CorpusSettings()
    expected = split_of(works, settings)
    shuffled = works[:]
    random.Random(7).shuffle(shuffled)
    assert split_of(shuffled, settings) == expected
    held = {frozenset(k for k, v in split_of(works, CorpusSettings(seed=seed)).items() if v == "val") for seed in range(10)}
    assert len(held) > 1  # the seed chooses which works are held out


# --- the mix -----------------------------------------------------------------------------


def test_real_subset_mix_shares_follow_the_weights(real: BuildResult) -> None:
    rows = read_jsonl(real.corpus_dir / DOCUMENTS_FILE)
    chars: Counter = Counter()
    for row in rows:
        if row["split"] == "train":
            chars[row["author"]] += len(row["text"])
    weights = {"Андреев": 10.0, "Чехов": 1.0, "Горький": 2.5, "Гоголь": 1.0, "Белый": 1.0}
    weighted = sum(weights[a] * c for a, c in chars.items())
    mix = real.report["mix"]
    assert set(mix) == set(weights)
    for author, share in mix.items():
        assert share["weight"] == weights[author]
        assert share["train_chars"] == chars[author]
        assert share["raw_share"] == pytest.approx(chars[author] / sum(chars.values()))
        assert share["effective_share"] == pytest.approx(weights[author] * chars[author] / weighted)
    assert sum(s["effective_share"] for s in mix.values()) == pytest.approx(1.0)
    assert sum(s["raw_share"] for s in mix.values()) == pytest.approx(1.0)
    target = mix["Андреев"]
    others = sum(weights[a] * c for a, c in chars.items() if a != "Андреев")
    assert target["effective_share"] == pytest.approx(10 * chars["Андреев"] / (10 * chars["Андреев"] + others))
    assert target["effective_share"] > target["raw_share"]


def test_upsampling_does_not_copy_text(real: BuildResult) -> None:
    """The weight lives in report.json's mix; each work is written once."""
    path = real.corpus_dir / DOCUMENTS_FILE
    rows = read_jsonl(path)
    assert len(rows) == len(real.documents)
    assert len({r["source"] for r in rows}) == len(rows)
    text_bytes = sum(len(r["text"].encode("utf-8")) for r in rows)
    assert path.stat().st_size < 1.05 * text_bytes + 1000 * len(rows)


def test_mix_shares_counts_training_text_only() -> None:
    docs = [
        Document("1", "T", "target", "t1", "t1", "train", "а" * 300),
        Document("2", "T", "target", "t2", "t2", "val", "а" * 5000),
        Document("3", "I", "influence", "i1", "i1", "train", "б" * 600),
        Document("4", "J", "influence", "j1", "j1", "train", "в" * 100),
    ]
    mix = mix_shares(docs, {"T": 10.0, "I": 1.0, "J": 2.0, "Nobody": 3.0})
    assert mix["T"]["train_chars"] == 300 and mix["T"]["raw_share"] == pytest.approx(0.3)
    assert mix["T"]["effective_share"] == pytest.approx(3000 / 3800)
    assert mix["I"]["effective_share"] == pytest.approx(600 / 3800)
    assert mix["J"]["effective_share"] == pytest.approx(200 / 3800)
    assert mix["Nobody"] == {"train_chars": 0, "raw_share": 0.0, "weight": 3.0, "effective_share": 0.0}


# --- bad input ---------------------------------------------------------------------------


XXE_FB2 = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0">
<description><title-info><book-title>Сосед</book-title></title-info></description>
<body><section><p>{text}</p><p>&e;</p><p>Конец: &e;</p></section></body>
</FictionBook>
"""


def make_bad_folder(folder: Path) -> dict[str, str]:
    """One good text and every kind of bad file; returns bad file name -> expected reason words."""
    folder.mkdir(parents=True)
    good = synthetic_prose(1, 12)
    (folder / "good.txt").write_text(good, encoding="utf-8")
    packed_xz = lzma.compress(synthetic_prose(2, 12).encode("utf-8"))
    packed_gz = gzip.compress(synthetic_prose(3, 12).encode("utf-8"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "garbage.bin").write_bytes(random.Random(0).randbytes(8192))
    (folder / "cut.txt.xz").write_bytes(packed_xz[: len(packed_xz) // 2])
    (folder / "cut.txt.gz").write_bytes(packed_gz[: len(packed_gz) // 2])
    (folder / "broken.zip").write_bytes(b"PK\x03\x04" + random.Random(1).randbytes(2000))
    (folder / "malformed.fb2").write_bytes(
        b'<?xml version="1.0" encoding="utf-8"?>\n<FictionBook><body><section><p>\xd0\x9e\xd0\xbd <<<>>> </p </section'
    )
    (folder / "xxe.fb2").write_text(XXE_FB2.format(text=synthetic_words(60, seed=5)), encoding="utf-8")
    (folder / "dangling.txt").symlink_to(folder / "no-such-file.txt")
    (folder / "locked.txt").write_text(synthetic_prose(4, 12), encoding="utf-8")
    (folder / "locked.txt").chmod(0)
    return {
        "empty.txt": "empty",
        "garbage.bin": "binary",
        "cut.txt.xz": "corrupt xz",
        "cut.txt.gz": "corrupt gzip",
        "broken.zip": "zip",
        "malformed.fb2": "",  # recovered to almost nothing, or skipped as malformed: either names it
        "dangling.txt": "cannot read",
    }


def test_bad_files_beside_a_good_text(tmp_path: Path) -> None:
    folder = tmp_path / "books" / "mixed"
    bad = make_bad_folder(folder)
    # A 3 MB text on a single line, no newline anywhere.
    huge = synthetic_words(300_000, seed=9)
    (folder / "one_line.txt").write_text(huge, encoding="utf-8")
    assert "\n" not in huge and (folder / "one_line.txt").stat().st_size > 3_000_000
    before = snapshot(folder)
    ws = init_workspace(tmp_path / "double")
    ws, _ = add_sources(ws, [folder], author="Автор", role="target")
    try:
        result = build_corpus(ws)
    finally:
        (folder / "locked.txt").chmod(0o644)
        after = snapshot(folder)
        (folder / "locked.txt").chmod(0)
    assert {k: v for k, v in after.items() if not k.endswith("locked.txt")} == {
        k: v for k, v in before.items() if not k.endswith("locked.txt")
    }
    assert after[str(folder / "locked.txt")][:2] == before[str(folder / "locked.txt")][:2]

    sources = docs_by_source(result)
    good_words = synthetic_prose(1, 12).split()
    assert sources["mixed/good.txt"].text.split() == good_words
    assert len(sources["mixed/one_line.txt"].text) > 1_000_000  # handled as one (big) work
    assert "mixed/xxe.fb2" in sources  # its own text is read...
    for doc in result.documents:  # ...but never the file its entity points at
        assert "root:" not in doc.text and "/bin/" not in doc.text
    if os.geteuid() != 0:  # root reads a mode-000 file
        bad["locked.txt"] = "cannot read"
        assert "mixed/locked.txt" not in sources

    skipped = {s["source"]: s["reason"] for s in result.report["files"]["skipped"]}
    notes = {n["source"]: n["reason"] for n in result.report["files"]["notes"]}
    for name, words in bad.items():
        label = f"mixed/{name}"
        assert label not in sources, label
        reason = skipped.get(label) or notes.get(label)
        assert reason, f"{label} is neither skipped nor noted: {skipped}"
        assert words.lower() in reason.lower(), (label, reason)
        assert "\n" not in reason and len(reason) < 400, reason
    md = (result.corpus_dir / REPORT_MD).read_text(encoding="utf-8")
    for label in skipped:
        assert f"`{label}`" in md


def test_nothing_usable_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "books" / "junk"
    folder.mkdir(parents=True)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "garbage.bin").write_bytes(random.Random(0).randbytes(4096))
    (folder / "tiny.txt").write_text("Всего пять слов тут есть.", encoding="utf-8")
    ws = init_workspace(tmp_path / "double")
    ws, _ = add_sources(ws, [folder], author="Автор", role="target")
    with pytest.raises(CorpusError) as exc:
        build_corpus(with_settings(ws, workers=1))
    message = str(exc.value)
    assert "\n" not in message
    assert "no usable text in 3 file(s)" in message
    assert "junk/empty.txt: empty file" in message and "junk/garbage.bin" in message
    assert "junk/tiny.txt: fewer than 20 words" in message
    assert not ws.corpus_dir.exists()
    assert stray_entries(ws.root) == []


def test_no_sources_is_an_error(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "double")
    with pytest.raises(CorpusError, match="no sources yet"):
        build_corpus(ws)
    assert not ws.corpus_dir.exists()


def test_empty_source_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "books" / "none").mkdir(parents=True)
    ws = init_workspace(tmp_path / "double")
    ws, _ = add_sources(ws, [tmp_path / "books" / "none"], author="Автор")
    with pytest.raises(CorpusError, match="the sources hold no files"):
        build_corpus(ws)
    assert not ws.corpus_dir.exists()


def test_nothing_usable_keeps_the_previous_corpus(tmp_path: Path) -> None:
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12), "b.txt": synthetic_prose(2, 12)})
    build_corpus(ws)
    old = (ws.corpus_dir / DOCUMENTS_FILE).read_bytes()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "books" / "texts" / name).write_bytes(b"")
    with pytest.raises(CorpusError, match="no usable text"):
        build_corpus(ws)
    assert (ws.corpus_dir / DOCUMENTS_FILE).read_bytes() == old
    assert stray_entries(ws.root) == []


# --- min_document_words ------------------------------------------------------------------


def test_short_documents_are_dropped_and_reported(tmp_path: Path) -> None:
    ws = simple_workspace(
        tmp_path, {"long.txt": synthetic_words(80, seed=1), "short.txt": synthetic_words(30, seed=2), "tiny.txt": "Три слова тут."}
    )
    # The setting is read from dvoinik.toml.
    config = ws.config_path
    config.write_text(
        config.read_text(encoding="utf-8").replace("min_document_words = 20", "min_document_words = 50"), encoding="utf-8"
    )
    ws = with_settings(load_workspace(ws.root), workers=1)
    assert ws.corpus.min_document_words == 50
    result = build_corpus(ws)
    assert [d.source for d in result.documents] == ["texts/long.txt"]
    skipped = {s["source"]: s["reason"] for s in result.report["files"]["skipped"]}
    assert skipped == {
        "texts/short.txt": "fewer than 50 words after cleaning",
        "texts/tiny.txt": "fewer than 50 words after cleaning",
    }
    assert result.report["files"]["works_read"] == 3
    # With the default of 20 the 30-word text is kept.
    result = build_corpus(with_settings(ws, min_document_words=20))
    assert [d.source for d in result.documents] == ["texts/long.txt", "texts/short.txt"]


# --- atomic writes -----------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def only_corpus_complete(root: Path) -> None:
    """The one documents.jsonl under the workspace is corpus/'s; no staging or backup is left."""
    assert [p.relative_to(root).as_posix() for p in root.rglob(DOCUMENTS_FILE)] == [f"corpus/{DOCUMENTS_FILE}"]
    assert stray_entries(root) == []


def failing_replace(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """os.replace fails when it would put the new corpus in place (the last step)."""
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst) == target and Path(src).name.endswith(".tmp"):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(buildmod.os, "replace", replace)


def failing_markdown(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """The third file fails after the first two are written."""

    def render(report: dict) -> str:
        raise Boom("render failed")

    monkeypatch.setattr(buildmod, "render_markdown", render)


def interrupted_documents(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Ctrl-C while documents.jsonl is half written."""
    calls = []
    real_asdict = buildmod.asdict

    def asdict(obj):
        calls.append(obj)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_asdict(obj)

    monkeypatch.setattr(buildmod, "asdict", asdict)


@pytest.mark.parametrize("failure", [failing_markdown, interrupted_documents, failing_replace])
def test_a_failed_write_keeps_the_previous_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure) -> None:
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12), "b.txt": synthetic_prose(2, 12)})
    build_corpus(ws)
    old = {name: (ws.corpus_dir / name).read_bytes() for name in (DOCUMENTS_FILE, REPORT_JSON, REPORT_MD)}
    (tmp_path / "books" / "texts" / "c.txt").write_text(synthetic_prose(3, 12), encoding="utf-8")

    with monkeypatch.context() as patch:
        failure(patch, ws.corpus_dir)
        with pytest.raises((Boom, KeyboardInterrupt, OSError, CorpusError)):
            build_corpus(ws)
    assert {name: (ws.corpus_dir / name).read_bytes() for name in old} == old
    only_corpus_complete(ws.root)

    result = build_corpus(ws)  # and the next build replaces it
    assert {d.source for d in result.documents} == {"texts/a.txt", "texts/b.txt", "texts/c.txt"}
    assert len(read_jsonl(ws.corpus_dir / DOCUMENTS_FILE)) == 3
    only_corpus_complete(ws.root)


def test_a_failed_first_write_leaves_no_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12)})
    failing_markdown(monkeypatch, ws.corpus_dir)
    with pytest.raises(Boom):
        build_corpus(ws)
    assert not ws.corpus_dir.exists()
    assert stray_entries(ws.root) == []


def test_a_write_error_is_a_corpus_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (or a read-only workspace) is one clear message, and the old corpus stays."""
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12)})
    build_corpus(ws)
    old = (ws.corpus_dir / DOCUMENTS_FILE).read_bytes()

    failure = {"error": OSError(errno.EROFS, "Read-only file system")}

    def fsync(fd: int) -> None:
        raise failure["error"]

    monkeypatch.setattr(buildmod.os, "fsync", fsync)
    with pytest.raises(CorpusError) as exc:
        build_corpus(ws)
    assert str(exc.value) == f"{ws.corpus_dir}: cannot write the corpus: Read-only file system"
    failure["error"] = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DiskFullError) as full:
        build_corpus(ws)
    assert str(full.value).startswith(f"{ws.corpus_dir}: no space left on device while writing it (")
    assert (ws.corpus_dir / DOCUMENTS_FILE).read_bytes() == old
    only_corpus_complete(ws.root)


def test_a_build_killed_mid_swap_is_recovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between moving corpus/ aside and moving the new one in: the old one is not lost."""
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12)})
    build_corpus(ws)
    old = (ws.corpus_dir / DOCUMENTS_FILE).read_bytes()
    os.replace(ws.corpus_dir, ws.root / ".corpus.old")  # what the killed build left
    with monkeypatch.context() as patch:
        failing_markdown(patch, ws.corpus_dir)
        with pytest.raises(Boom):
            build_corpus(ws)
    assert (ws.corpus_dir / DOCUMENTS_FILE).read_bytes() == old  # put back, not deleted
    only_corpus_complete(ws.root)

    os.replace(ws.corpus_dir, ws.root / ".corpus.old")
    (tmp_path / "books" / "texts" / "b.txt").write_text(synthetic_prose(2, 12), encoding="utf-8")
    result = build_corpus(ws)
    assert len(read_jsonl(ws.corpus_dir / DOCUMENTS_FILE)) == len(result.documents) == 2
    only_corpus_complete(ws.root)


def test_corpus_folder_gets_the_usual_mode(tmp_path: Path) -> None:
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12)})
    build_corpus(ws)
    (tmp_path / "plain").mkdir()
    assert stat.S_IMODE(ws.corpus_dir.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_a_leftover_backup_does_not_break_the_build(tmp_path: Path) -> None:
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12)})
    build_corpus(ws)
    (ws.root / ".corpus.old").mkdir()
    (ws.root / ".corpus.old" / DOCUMENTS_FILE).write_text("{}\n", encoding="utf-8")
    build_corpus(ws)
    only_corpus_complete(ws.root)


# --- small pieces ------------------------------------------------------------------------


def test_document_ids_are_stable_and_unique() -> None:
    assert document_id("andreev/iuda_iskariot.txt.xz") == document_id("andreev/iuda_iskariot.txt.xz")
    assert len(document_id("x")) == 12 and document_id("x") != document_id("y")
    assert buildmod._unique_ids(["a", "b", "a", "a"]) == ["a", "b", "a-2", "a-3"]


def test_progress_callbacks(tmp_path: Path) -> None:
    ws = simple_workspace(tmp_path, {"a.txt": synthetic_prose(1, 12), "b.txt": synthetic_prose(2, 12), "c.txt": ""})
    started: list[int] = []
    seen: list[str] = []
    stages: list[str] = []
    build_corpus(
        with_settings(ws, workers=2),
        on_start=started.append,
        on_file=lambda o: seen.append(o.label),
        on_stage=stages.append,
    )
    assert started == [3]
    assert sorted(seen) == ["texts/a.txt", "texts/b.txt", "texts/c.txt"]
    assert stages == ["deduplicating", "writing"]


def test_warnings_name_what_weakens_the_corpus() -> None:
    row = {"train_works": 1, "val_works": 0}
    warnings = corpus_warnings(
        {
            "Автор": {"role": "target", **row},
            "Учитель": {"role": "influence", **row},
            "Пустой": {"role": "influence", "train_works": 0, "val_works": 0},
        }
    )
    assert len(warnings) == 2
    assert warnings[0].startswith("Автор: only one work, so none is held out")
    assert warnings[1].startswith("Пустой: no usable text")
    assert corpus_warnings({"Автор": {"role": "target", "train_works": 3, "val_works": 1}}) == []
    assert corpus_warnings({"Учитель": {"role": "influence", **row}})[0].startswith("no target author")


def test_workers_end_with_a_killed_build(tmp_path: Path) -> None:
    """`kill -9` of a build: its worker processes go with it (they used to wait for work for ever)."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "build.py"
    script.write_text(
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from dvoinik.corpus import build\n"
        "def slow(task):\n"
        "    os.write(1, f'{os.getpid()}\\n'.encode())  # one write: the two workers' lines never interleave\n"
        "    time.sleep(120)\n"
        "build._read_and_clean = slow  # the workers are forked: they run this one\n"
        "tasks = [build.FileTask(Path(f'{i}.txt'), f'{i}.txt', 'A', 'target', 'auto', 'ru') for i in range(2)]\n"
        "build.read_sources(tasks, workers=2)\n", encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(parent.stdout.readline()) for _ in range(2)]
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        return state != "Z"  # a zombie has ended (nobody has reaped it yet)

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert not any(alive(pid) for pid in workers)
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
