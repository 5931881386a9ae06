from __future__ import annotations

import lzma
import os
import random
from pathlib import Path

import numpy as np
import pytest
from synthetic import SYLLABLES

from dvoinik.corpus.build import CorpusError, build_corpus
from dvoinik.corpus.clean import clean_text
from dvoinik.evaluation.stylometry import (
    StyleError,
    StyleModel,
    StyleSettings,
    TrainingSet,
    attribute,
    attribute_many,
    cosine_distances,
    fit_from_training,
    fit_style_model,
    load_or_fit_workspace_model,
    model_path,
    normalize,
    prepare_training,
    style_file,
)
from dvoinik.workspace import add_sources, init_workspace, write_settings

SMALL = StyleSettings(mfw=150, char_n=3, char_features=600, chunk_words=500, min_words=100)
SHARED_CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def _vocabulary(seed: int, size: int) -> list[str]:
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
        if word not in words:
            words.append(word)
    return words


FUNCTION_WORDS = _vocabulary(0, 200)


def author_prose(author: int, work: int, words: int) -> str:
    """Prose whose author shows in how often each shared function word is used (a Zipf law, bent per author).

    Each work also has its own content words, as real works have their own topics and names.
    """
    style = np.random.default_rng([1, author])
    weights = 1 / np.arange(1, len(FUNCTION_WORDS) + 1) * np.exp(style.normal(0, 0.7, len(FUNCTION_WORDS)))
    weights /= weights.sum()
    content = _vocabulary(1000 * author + work + 1, 150)
    rng = np.random.default_rng([2, author, work])
    picks = [FUNCTION_WORDS[i] for i in rng.choice(len(FUNCTION_WORDS), size=words, p=weights)]
    picks = [w if rng.random() < 0.7 else content[rng.integers(len(content))] for w in picks]
    out, sentence = [], []
    for w in picks:
        sentence.append(w)
        if len(sentence) >= rng.integers(6, 18):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    out.append(" ".join(sentence).capitalize() + ".")
    return "\n\n".join(" ".join(out[i : i + 5]) for i in range(0, len(out), 5))


def corpus(works: dict[str, int], words: int = 1500) -> dict[str, list[tuple[str, str]]]:
    return {name: [(f"w{w}", author_prose(a, w, words)) for w in range(n)] for a, (name, n) in enumerate(works.items())}


@pytest.fixture(scope="module")
def model() -> StyleModel:
    return fit_style_model(corpus({"Анна": 3, "Борис": 3, "Вера": 1}), SMALL)


def test_texts_are_attributed_to_their_author(model: StyleModel) -> None:
    texts = [author_prose(a, 50 + a, 1200) for a in range(3)]  # new works, unseen topics
    results = attribute_many(model, texts)
    assert [r.best.author for r in results] == ["Анна", "Борис", "Вера"]  # Вера, with one work, is a candidate too
    for r in results:
        distances = [s.distance for s in r.ranking]
        assert distances == sorted(distances)
        assert [s.probability for s in r.ranking] == sorted((s.probability for s in r.ranking), reverse=True)
        assert sum(s.probability for s in r.ranking) == pytest.approx(1.0)
        for s in r.ranking:
            assert s.distance == pytest.approx((s.word_distance + s.char_distance) / 2)
        assert 1000 <= r.words <= 1200


def test_confidence_is_high_for_a_clear_text_and_lower_for_a_mixed_one(model: StyleModel) -> None:
    clear = attribute(model, author_prose(0, 60, 1500))
    mixed = attribute(model, author_prose(0, 61, 750) + "\n\n" + author_prose(1, 61, 750))
    assert clear.best.author == "Анна" and clear.confidence > 0.9
    assert {s.author for s in mixed.ranking[:2]} == {"Анна", "Борис"}
    assert mixed.confidence < clear.confidence
    assert mixed.ranking[1].distance - mixed.best.distance < clear.ranking[1].distance - clear.best.distance


def test_calibration_holds_out_works_and_skips_single_work_authors(model: StyleModel) -> None:
    cal = model.calibration
    assert cal.single_work_authors == ("Вера",)
    assert cal.works == 6 and cal.queries == 6 * 3  # 1500-word works in chunks of 500; Вера's never a query
    assert cal.accuracy == 1.0 and cal.ece is not None and cal.ece < 0.1
    assert 1e-3 <= model.temperature < 1.0
    assert model.training["Вера"] == {"works": 1, "chunks": 3, "words": model.training["Вера"]["words"]}


def test_an_uncalibrated_model_says_so() -> None:
    single = fit_style_model(corpus({"Анна": 1, "Борис": 1}), SMALL)
    assert not single.calibration.calibrated and single.calibration.accuracy is None
    assert attribute(single, author_prose(1, 9, 800)).best.author == "Борис"


def test_json_round_trip_gives_the_same_attribution(model: StyleModel) -> None:
    text = author_prose(2, 70, 900)
    again = StyleModel.from_json(model.to_json())
    assert again.settings == model.settings and again.authors == model.authors and again.calibration == model.calibration
    assert attribute(again, text) == attribute(model, text)
    with pytest.raises(ValueError, match="format"):
        StyleModel.from_json('{"format": 999}')


def test_batch_equals_single(model: StyleModel) -> None:
    texts = [author_prose(a % 3, 80 + a, 400 + 100 * a) for a in range(5)]
    batch = attribute_many(model, texts)
    for text, result in zip(texts, batch):
        single = attribute(model, text)
        assert [s.author for s in single.ranking] == [s.author for s in result.ranking]
        assert [s.probability for s in single.ranking] == pytest.approx([s.probability for s in result.ranking], abs=1e-12)
        assert single.words == result.words


def test_too_short_a_text_and_too_few_authors_are_errors(model: StyleModel) -> None:
    with pytest.raises(StyleError, match=r"the text has 60 words; attribution needs at least 100"):
        attribute(model, author_prose(0, 90, 60))
    with pytest.raises(StyleError, match=r"text 2 of 2 has 0 words"):
        attribute_many(model, [author_prose(0, 91, 200), "12 345 — …"])
    with pytest.raises(StyleError, match=r"at least 2 authors with text; got 1 \(Анна\)"):
        fit_style_model({**corpus({"Анна": 2}), "Пустой": [("w0", "123 456")]}, SMALL)


def test_yo_case_and_stress_marks_are_folded() -> None:
    assert normalize("Ещё  ЁЛКА\n\nза́мок") == "еще елка замок"
    m = fit_style_model(corpus({"Анна": 2, "Борис": 2}), SMALL)
    text = author_prose(0, 5, 600)
    yo = text.replace("е", "ё")
    assert np.allclose(m.zscores([text])[0], m.zscores([yo])[0]) and np.allclose(m.zscores([text])[1], m.zscores([yo])[1])


def test_fewer_features_are_the_leading_columns_of_a_wider_count() -> None:
    texts = corpus({"Анна": 2, "Борис": 2, "Вера": 2}, words=1200)
    narrow = StyleSettings(mfw=40, char_n=3, char_features=200, chunk_words=500, min_words=100)
    direct = fit_style_model(texts, narrow)
    sliced = fit_from_training(prepare_training(texts, SMALL), narrow)
    assert sliced.words == direct.words and sliced.char_ngrams == direct.char_ngrams
    assert np.allclose(sliced.word_centroids, direct.word_centroids)
    assert np.allclose(sliced.char_centroids, direct.char_centroids)
    assert sliced.temperature == pytest.approx(direct.temperature)
    with pytest.raises(ValueError):
        fit_from_training(prepare_training(texts, narrow), SMALL)


# ---------------------------------------------------------------- the workspace


def make_style_workspace(root: Path, authors: dict[str, int]):
    books = root / "books"
    ws = init_workspace(root / "double")
    for a, (name, works) in enumerate(authors.items()):
        folder = books / name
        folder.mkdir(parents=True)
        for w in range(works):
            (folder / f"work{w}.txt").write_text(author_prose(a, w, 1500), encoding="utf-8")
        ws, _ = add_sources(ws, [folder], author=name, role="target" if a == 0 else "influence")
    ws = write_settings(ws, "corpus", {"workers": 1})
    build_corpus(ws)
    return ws


def test_style_file_reads_any_format_and_caches_the_model(tmp_path: Path) -> None:
    ws = make_style_workspace(tmp_path, {"Анна": 4, "Борис": 3})
    plain = tmp_path / "unknown.txt"
    plain.write_bytes(author_prose(1, 40, 1000).encode("cp1251"))
    result = style_file(ws, plain, SMALL)
    assert result.best.author == "Борис" and result.confidence > 0.5
    path = model_path(ws)
    assert path == ws.root / "style" / "model.json" and path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name != "model.json"]  # no temporary file left

    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    stamp = path.stat().st_mtime_ns
    fb2 = tmp_path / "unknown.fb2"
    sections = "".join(f"<section><p>{p}</p></section>" for p in author_prose(0, 41, 1000).split("\n\n"))
    fb2.write_text('<?xml version="1.0" encoding="utf-8"?><FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0">'
                   f"<description><title-info><book-title>Х</book-title></title-info></description><body>{sections}</body>"
                   "</FictionBook>", encoding="utf-8")
    assert style_file(ws, fb2, SMALL).best.author == "Анна"
    assert path.stat().st_mtime_ns == stamp  # same corpus, same settings: reused

    load_or_fit_workspace_model(ws, StyleSettings(mfw=100, char_features=500, chunk_words=500, min_words=100))
    assert path.stat().st_mtime_ns != stamp  # other settings: fitted again
    stamp = path.stat().st_mtime_ns
    os.utime(path, ns=(stamp - 10**9, stamp - 10**9))
    stamp = path.stat().st_mtime_ns
    (tmp_path / "books" / "Борис" / "work3.txt").write_text(author_prose(1, 3, 1500), encoding="utf-8")
    build_corpus(ws)
    model = load_or_fit_workspace_model(ws, SMALL)
    assert path.stat().st_mtime_ns != stamp and model.training["Борис"]["works"] >= 3  # a new corpus: fitted again


def test_workspace_errors_name_the_file(tmp_path: Path) -> None:
    empty = init_workspace(tmp_path / "empty")
    with pytest.raises(StyleError, match=r"corpus: no corpus built yet; run `dvoinik corpus` first"):
        load_or_fit_workspace_model(empty)

    ws = make_style_workspace(tmp_path / "two", {"Анна": 3, "Борис": 3})
    short = tmp_path / "short.txt"
    short.write_text(author_prose(0, 9, 50), encoding="utf-8")
    with pytest.raises(StyleError, match=rf"^{short}: the text has 50 words; attribution needs at least 100$"):
        style_file(ws, short, SMALL)
    with pytest.raises(CorpusError, match=rf"^{tmp_path / 'missing.txt'}: cannot read file"):
        style_file(ws, tmp_path / "missing.txt", SMALL)

    lonely = make_style_workspace(tmp_path / "one", {"Анна": 3})
    with pytest.raises(StyleError, match=r"documents\.jsonl: attribution needs at least 2 authors with text; got 1 \(Анна\)"):
        load_or_fit_workspace_model(lonely, SMALL)


# ---------------------------------------------------------------- real texts


REAL_AUTHORS = ("chekhov", "dostoevsky", "gorky", "tolstoy", "turgenev")


def read_work(path: Path) -> str:
    return clean_text(lzma.decompress(path.read_bytes()).decode("utf-8")).text


def test_real_authors_are_recognised_in_works_left_out() -> None:
    classics = SHARED_CORPUS / "ru-classics"
    if not classics.is_dir():
        pytest.skip(f"shared corpus not found at {SHARED_CORPUS}")
    rows = [line.split("\t") for line in (classics / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    train: dict[str, list[tuple[str, str]]] = {}
    test: dict[str, str] = {}
    for author in REAL_AUTHORS:
        # Mid-sized works keep the test fast; sorted by file name so the choice is fixed.
        files = sorted(r[1] for r in rows if r[0] == author and 30_000 <= int(r[5]) <= 300_000)[:4]
        assert len(files) == 4
        train[author] = [(f, read_work(classics / f)) for f in files[:3]]
        test[author] = read_work(classics / files[3])
    model = fit_style_model(train)
    samples, truth = [], []
    for author, text in test.items():
        words = text.split()
        for start in (len(words) // 4, len(words) // 2):  # two 2,000-word samples from the work left out
            samples.append(" ".join(words[start : start + 2000]))
            truth.append(author)
    results = attribute_many(model, samples)
    right = sum(r.best.author == a for r, a in zip(results, truth))
    assert right >= 8, [(a, r.best.author, round(r.confidence, 2)) for r, a in zip(results, truth)]
    assert model.calibration.accuracy is not None and model.calibration.accuracy > 0.6


def test_calibration_scores_a_work_only_against_its_authors_other_works() -> None:
    # Four one-chunk works, counts of four features per 100 words. With its own work in
    # its author's centroid every chunk would be ranked right; each of A's works alone is
    # closer to B than to A's other work, so held out, both of A's chunks are wrong.
    counts = np.array([[5, 1, 2, 9], [0, 8, 6, 4], [8, 8, 4, 6], [7, 6, 4, 9]], dtype=float)
    settings = StyleSettings(mfw=4, char_n=1, char_features=4, chunk_words=100, min_words=50)
    training = TrainingSet(
        settings=settings, authors=["A", "B"], works=[(0, "a0"), (0, "a1"), (1, "b0"), (1, "b1")],
        chunk_work=np.arange(4), chunk_words=np.full(4, 100), chunk_ngrams=np.full(4, 100), words=list("abcd"),
        word_counts=counts, alphabet="abcd", char_ngrams=list("abcd"), char_counts=counts,
    )
    z = (counts - counts.mean(axis=0)) / counts.std(axis=0)
    with_own = cosine_distances(z, np.stack([z[:2].mean(axis=0), z[2:].mean(axis=0)]))
    assert (with_own.argmin(axis=1) == [0, 0, 1, 1]).all()
    model = fit_from_training(training)
    assert model.calibration.queries == 4 and model.calibration.works == 4
    assert model.calibration.accuracy == 0.5


def test_style_from_the_command_line(tmp_path: Path) -> None:
    import json

    from test_cli import assert_user_error, invoke

    ws = make_style_workspace(tmp_path, {"Анна": 3, "Борис": 3})
    by_boris = tmp_path / "boris.txt"
    by_boris.write_text(author_prose(1, 77, 1500), encoding="utf-8")
    shown = invoke("-w", ws.root, "style", by_boris)
    assert shown.exit_code == 0, shown.output
    assert "reads most like Борис" in shown.stdout and "calibration: leave-one-work-out" in shown.stdout
    as_json = json.loads(invoke("-w", ws.root, "style", by_boris, "--json").stdout)
    assert as_json["best"] == "Борис" and [s["author"] for s in as_json["ranking"]][0] == "Борис"
    assert abs(sum(s["probability"] for s in as_json["ranking"]) - 1) < 1e-6
    short = tmp_path / "short.txt"
    short.write_text(author_prose(1, 78, 40), encoding="utf-8")
    assert_user_error(invoke("-w", ws.root, "style", short), "short.txt", "40 words")
    assert_user_error(invoke("-w", ws.root, "style", tmp_path / "none.txt"), "none.txt")
