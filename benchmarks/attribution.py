"""Attribution accuracy on held-out works of the 13 authors in the shared corpus.

    python benchmarks/attribution.py [--corpus ../shared/corpus] [--write docs/benchmarks.md] [--no-tune]

1. Builds `ru-classics` with dvoinik's own corpus stage in a temporary workspace, so the
   texts are read, cleaned and deduplicated the way users get them.
2. Splits each author's works into training and test works (whole works, a seeded
   order, about 20% of the author's words held out, never more than half, at least one
   work on each side; the pipeline's own validation split would leave an author with
   two works nothing to test on).
3. Tuning (unless --no-tune): three development folds cut the same way from the
   training works only; for each chunk size and character n a model is fitted on the
   rest and scored on samples of the development works, for every MFW count and number
   of character n-grams. The test works are not touched. The recommended settings are
   the smallest model within one standard error of the best; the doc says whether they
   are the defaults.
4. Fits the default settings (`StyleSettings()`) on all training works and attributes
   samples of 500, 1,000, 2,000 and 5,000 consecutive words drawn from the test works
   (up to --per-author per author and size, non-overlapping, spread over the author's
   works). Reports top-1 accuracy of the word view, the character view, their
   combination, and in the same run classic Burrows' Delta (mean absolute z-score
   difference) on the same MFW and on its own best MFW from the development folds, plus
   chance; and the calibration: mean confidence against accuracy, and ECE.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import math
import os
import platform
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sections import publish

from dvoinik.corpus.build import Document, build_corpus
from dvoinik.evaluation.stylometry import (
    StyleModel,
    StyleSettings,
    cosine_distances,
    expected_calibration_error,
    fit_from_training,
    prepare_training,
    probabilities,
    work_id,
)
from dvoinik.workspace import add_sources, init_workspace

ROOT = Path(__file__).resolve().parents[1]
SECTION_START = "<!-- attribution:start -->"
SECTION_END = "<!-- attribution:end -->"
SIZES = (500, 1000, 2000, 5000)  # test sample sizes; 500 shows what happens near the minimum
TUNE_SIZES = (1000, 2000, 5000)
TEST_SEED = 2024
DEV_SEEDS = (1, 2, 3)
HELD_SHARE, HELD_CAP = 0.2, 0.5

# The tuning grid: a (chunk_words, char_n) pair needs its own count; the feature counts are column slices.
GRID_CHUNKS = (1000, 2000, 4000)
GRID_CHAR_N = (2, 3, 4)
GRID_MFW = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000)
GRID_CHAR_FEATURES = (500, 1000, 2000, 3000, 5000, 8000, 12000)

err = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True)


def build_documents(corpus: Path, folder: Path) -> list[Document]:
    ws = init_workspace(folder / "ws", name="ru-classics")
    classics = corpus / "ru-classics"
    for author in sorted(p.name for p in classics.iterdir() if p.is_dir()):
        ws, _ = add_sources(ws, [classics / author], author=author, role="influence")
    with progress_bar() as bar:
        task = bar.add_task("building the corpus", total=None)
        result = build_corpus(ws, on_start=lambda n: bar.update(task, total=n), on_file=lambda _: bar.advance(task),
                              on_stage=lambda name: bar.update(task, description=name))
    return result.documents


def words_of(doc: Document) -> int:
    return len(doc.text.split())


def split_works(docs: dict[str, list[Document]], seed: int) -> tuple[dict[str, list[Document]], dict[str, list[Document]]]:
    """(kept, held out) per author: whole works in a seeded order, about HELD_SHARE of the words, at most HELD_CAP."""
    kept, held = {}, {}
    for author, works in sorted(docs.items()):
        order = sorted(works, key=lambda d: hashlib.sha256(f"{seed}:{d.id}".encode()).hexdigest())
        total = sum(map(words_of, works))
        out: list[Document] = []
        out_words = 0
        for doc in order:
            if len(out) >= len(works) - 1 or out_words >= HELD_SHARE * total:
                break
            if out_words + words_of(doc) <= HELD_CAP * total:
                out.append(doc)
                out_words += words_of(doc)
        if not out and len(works) >= 2:  # every work is over half: hold out the smallest
            out = [min(works, key=words_of)]
        held[author] = out
        kept[author] = [d for d in works if d not in out]
    return kept, held


def draw_samples(works: dict[str, list[Document]], size: int, per_author: int, seed: int) -> list[tuple[str, str]]:
    """Up to `per_author` non-overlapping windows of `size` words per author, taken in turn from each of its works."""
    rng = np.random.default_rng([seed, size])
    samples = []
    for author, docs in sorted(works.items()):
        pools = []
        for doc in sorted(docs, key=lambda d: d.id):
            words = doc.text.split()
            if len(words) >= size:
                pools.append((words, list(rng.permutation(len(words) // size))))
        taken = 0
        while taken < per_author and any(order for _, order in pools):
            for words, order in pools:
                if order and taken < per_author:
                    i = int(order.pop())
                    samples.append((author, " ".join(words[i * size : (i + 1) * size])))
                    taken += 1
    return samples


def texts_by_author(works: dict[str, list[Document]]) -> dict[str, list[tuple[str, str]]]:
    return {a: [(work_id(d.source), d.text) for d in docs] for a, docs in works.items() if docs}


def view_distances(model: StyleModel, samples: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Distances (samples × authors) per method, and the true author of each sample."""
    word_z, char_z, _ = model.zscores([text for _, text in samples])
    dw, dc, d = model.distances(word_z, char_z)
    burrows = np.abs(word_z[:, None, :] - model.word_centroids[None]).mean(axis=2)
    truth = np.array([model.authors.index(a) for a, _ in samples])
    return {"words": dw, "chars": dc, "combined": d, "burrows": burrows, "truth": truth}


def accuracy(distances: np.ndarray, truth: np.ndarray) -> float:
    return float((distances.argmin(axis=1) == truth).mean())


# ---------------------------------------------------------------- tuning


def tune(train: dict[str, list[Document]], per_author: int) -> dict:
    """Accuracy on the development folds for every grid point: the rows (best first) and Burrows' Delta per MFW."""
    folds = [split_works(train, seed) for seed in DEV_SEEDS]
    widest = StyleSettings(mfw=max(GRID_MFW), char_features=max(GRID_CHAR_FEATURES))
    scores: dict[tuple, list[float]] = defaultdict(list)
    samples_scored = 0
    with progress_bar() as bar:
        task = bar.add_task("tuning on development folds", total=len(folds) * len(GRID_CHUNKS) * len(GRID_CHAR_N))
        for (kept, dev), chunk, n in itertools.product(folds, GRID_CHUNKS, GRID_CHAR_N):
            wide = fit_from_training(prepare_training(texts_by_author(kept), replace(widest, chunk_words=chunk, char_n=n)))
            for size in TUNE_SIZES:
                samples = draw_samples(dev, size, per_author, seed=17)
                word_z, char_z, _ = wide.zscores([text for _, text in samples])
                truth = np.array([wide.authors.index(a) for a, _ in samples])
                samples_scored += len(samples) if (chunk, n) == (GRID_CHUNKS[0], GRID_CHAR_N[0]) else 0
                # Fewer features are the leading columns of the widest model (vocabularies are ranked).
                dw = {k: cosine_distances(word_z[:, :k], wide.word_centroids[:, :k]) for k in GRID_MFW}
                dc = {k: cosine_distances(char_z[:, :k], wide.char_centroids[:, :k]) for k in GRID_CHAR_FEATURES}
                for mfw in GRID_MFW:
                    burrows = np.abs(word_z[:, None, :mfw] - wide.word_centroids[None, :, :mfw]).mean(axis=2)
                    scores[("burrows", chunk, mfw, size)].append(accuracy(burrows, truth))
                for mfw, features in itertools.product(GRID_MFW, GRID_CHAR_FEATURES):
                    key = (chunk, n, mfw, features)
                    scores[key + ("words", size)].append(accuracy(dw[mfw], truth))
                    scores[key + ("chars", size)].append(accuracy(dc[features], truth))
                    scores[key + ("combined", size)].append(accuracy((dw[mfw] + dc[features]) / 2, truth))
            bar.advance(task)

    def summary(key: tuple) -> dict:
        by_size = {size: float(np.mean(scores[key + (size,)])) for size in TUNE_SIZES}
        return {**by_size, "mean": float(np.mean(list(by_size.values())))}

    rows = []
    for chunk, n, mfw, features in itertools.product(GRID_CHUNKS, GRID_CHAR_N, GRID_MFW, GRID_CHAR_FEATURES):
        row = {"chunk_words": chunk, "char_n": n, "mfw": mfw, "char_features": features}
        row.update({view: summary((chunk, n, mfw, features, view)) for view in ("words", "chars", "combined")})
        rows.append(row)
    rows.sort(key=lambda r: -r["combined"]["mean"])
    burrows = {(chunk, mfw): summary(("burrows", chunk, mfw)) for chunk, mfw in itertools.product(GRID_CHUNKS, GRID_MFW)}
    # Many grid points tie within noise: take the smallest model (fewest features) within one
    # standard error of the best, which also suits the smaller corpora users have.
    best = rows[0]["combined"]["mean"]
    standard_error = math.sqrt(best * (1 - best) / samples_scored)
    close = [r for r in rows if r["combined"]["mean"] >= best - standard_error]
    choice = min(close, key=lambda r: (r["mfw"] + r["char_features"], -r["combined"]["mean"]))
    return {"rows": rows, "burrows": burrows, "choice": choice, "standard_error": standard_error,
            "samples": samples_scored}


def tuning_lines(tuning: dict) -> list[str]:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    rows = tuning["rows"]
    default = StyleSettings()
    key = ("chunk_words", "char_n", "mfw", "char_features")
    shown = rows[:8] + [r for r in rows[8:] if r is tuning["choice"]
                        or tuple(r[k] for k in key) == tuple(getattr(default, k) for k in key)]
    lines = [
        "| chunk words | char n | MFW | char n-grams | combined 1k / 2k / 5k | combined mean | words mean | chars mean |",
        "|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in shown:
        c = r["combined"]
        mark = " ←" if r is tuning["choice"] else ""
        lines.append(f"| {r['chunk_words']} | {r['char_n']} | {r['mfw']} | {r['char_features']}{mark} | "
                     f"{pct(c[1000])} / {pct(c[2000])} / {pct(c[5000])} | **{pct(c['mean'])}** | "
                     f"{pct(r['words']['mean'])} | {pct(r['chars']['mean'])} |")
    words = max(rows, key=lambda r: r["words"]["mean"])
    chars = max(rows, key=lambda r: r["chars"]["mean"])
    (b_chunk, b_mfw), b = max(tuning["burrows"].items(), key=lambda item: item[1]["mean"])
    choice = tuning["choice"]
    chosen = ", ".join(f"{k}={choice[k]}" for k in key)
    matches = tuple(choice[k] for k in key) == tuple(getattr(default, k) for k in key)
    lines += [
        "",
        f"The choice (←): the fewest features within one standard error ({pct(tuning['standard_error'])} points, "
        f"{tuning['samples']} development samples) of the best, {chosen}; "
        + ("these are the defaults." if matches else "**the defaults in `StyleSettings` differ: update them.**"),
        "",
        f"Best single views: words alone {pct(words['words']['mean'])} (chunks of {words['chunk_words']}, "
        f"MFW {words['mfw']}); characters alone {pct(chars['chars']['mean'])} (chunks of {chars['chunk_words']}, "
        f"{chars['char_n']}-grams × {chars['char_features']}). Burrows' Delta at its best, "
        f"{pct(b['mean'])} (chunks of {b_chunk}, MFW {b_mfw}); at MFW {default.mfw}, "
        f"{pct(tuning['burrows'][(default.chunk_words, default.mfw)]['mean'])}.",
    ]
    return lines


# ---------------------------------------------------------------- the test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file's attribution section")
    parser.add_argument("--per-author", type=int, default=20, help="test samples per author and size")
    parser.add_argument("--no-tune", action="store_true", help="skip the development-fold grid")
    args = parser.parse_args()
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        documents = build_documents(args.corpus, Path(tmp))
    by_author: dict[str, list[Document]] = defaultdict(list)
    for doc in documents:
        by_author[doc.author].append(doc)
    train, test = split_works(by_author, TEST_SEED)

    settings = StyleSettings()
    tuning = None
    burrows_mfw = settings.mfw
    if not args.no_tune:
        tuning = tune(train, per_author=8)
        best = tuning["rows"][0]
        err.print(f"best on the development folds: {({k: best[k] for k in ('chunk_words', 'char_n', 'mfw', 'char_features')})}")
        err.print(f"chosen: {({k: tuning['choice'][k] for k in ('chunk_words', 'char_n', 'mfw', 'char_features')})}")
        # The baseline at its own best MFW too (on the default chunks, which the test model uses):
        # Burrows' Delta degrades at the large MFW counts Cosine Delta thrives on.
        burrows_mfw = max((mfw for chunk, mfw in tuning["burrows"] if chunk == settings.chunk_words and mfw <= settings.mfw),
                          key=lambda mfw: tuning["burrows"][(settings.chunk_words, mfw)]["mean"])
    fit_started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task("fitting on the training works", total=None)
        model = fit_from_training(prepare_training(
            texts_by_author(train), settings, on_progress=lambda _, done, total: bar.update(task, completed=done, total=total)))
    fit_seconds = time.perf_counter() - fit_started

    results = {}
    for size in SIZES:
        samples = draw_samples(test, size, args.per_author, seed=TEST_SEED)
        t0 = time.perf_counter()
        d = view_distances(model, samples)
        seconds = time.perf_counter() - t0
        word_z = model.zscores([text for _, text in samples])[0][:, :burrows_mfw]
        d["burrows_best"] = np.abs(word_z[:, None, :] - model.word_centroids[None, :, :burrows_mfw]).mean(axis=2)
        p = probabilities(d["combined"], model.temperature)
        correct = p.argmax(axis=1) == d["truth"]
        per_author = {a: float(correct[d["truth"] == i].mean()) for i, a in enumerate(model.authors)
                      if (d["truth"] == i).any()}
        results[size] = {
            "samples": len(samples), "authors": len(per_author), "seconds": seconds,
            **{m: accuracy(d[m], d["truth"]) for m in ("words", "chars", "combined", "burrows", "burrows_best")},
            "confidence": float(p.max(axis=1).mean()), "ece": expected_calibration_error(p.max(axis=1), correct),
            "per_author": per_author,
        }

    cal = model.calibration
    chance = 1 / len(model.authors)

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    extra = burrows_mfw != settings.mfw  # the baseline's own best MFW, when tuning found another
    table = [
        f"| sample | samples (authors) | Cosine Delta, words | {settings.char_n}-grams | **combined** | "
        f"Burrows' Delta, MFW {settings.mfw} |" + (f" Burrows, MFW {burrows_mfw} |" if extra else "")
        + " chance | mean confidence | ECE |",
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if extra else "") + "---:|---:|---:|",
    ]
    for size, r in results.items():
        cells = [f"{size:,} words", f"{r['samples']} ({r['authors']})", pct(r["words"]), pct(r["chars"]),
                 f"**{pct(r['combined'])}**", pct(r["burrows"]), *([pct(r["burrows_best"])] if extra else []),
                 pct(chance), pct(r["confidence"]), f"{r['ece']:.3f}"]
        table.append("| " + " | ".join(cells) + " |")
    held = {a: len(docs) for a, docs in test.items()}
    kept = {a: len(docs) for a, docs in train.items()}
    lines = [
        SECTION_START,
        "## Stylometric attribution",
        "",
        f"`python benchmarks/attribution.py{' --no-tune' if args.no_tune else ''} --write docs/benchmarks.md` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}; {time.perf_counter() - started:.0f} s in all. "
        f"`ru-classics` built by dvoinik's corpus stage ({len(documents)} works after deduplication), split by whole "
        f"work: {sum(kept.values())} training works, {sum(held.values())} test works "
        f"({', '.join(f'{a} {kept[a]}/{held[a]}' for a in sorted(held))}: train/test). "
        f"Default settings {', '.join(f'{k}={v}' for k, v in asdict(settings).items())}; "
        f"samples of consecutive words from the test works, up to {args.per_author} per author and size "
        f"(an author whose test works are all shorter than a size has none of it).",
        "",
        *table,
        "",
        f"Calibration, leave-one-work-out on the training chunks: T = {model.temperature:.4f}, "
        f"{cal.queries} chunks from {cal.works} works, accuracy {pct(cal.accuracy)}, mean confidence "
        f"{pct(cal.mean_confidence)}, ECE {cal.ece:.3f}"
        f"{'; authors with one training work (candidates only): ' + ', '.join(cal.single_work_authors) if cal.single_work_authors else ''}.",
        "",
        "Combined accuracy per author at 2,000 words: "
        + ", ".join(f"{a} {pct(v)}" for a, v in results[2000]["per_author"].items()) + ".",
        "",
        f"Fitting the default model on the training works took {fit_seconds:.1f} s; attributing the "
        f"{results[2000]['samples']} 2,000-word samples {results[2000]['seconds']:.2f} s.",
    ]
    if tuning:
        lines += [
            "",
            f"Tuning on development folds cut from the training works only ({len(DEV_SEEDS)} folds, 8 samples per "
            f"author and size, mean top-1 accuracy of the combined view over 1k/2k/5k words; the test works were not "
            f"used). The eight best of {len(tuning['rows'])} grid points, then the choice and the defaults if they are not among them:",
            "",
            *tuning_lines(tuning),
        ]
    lines.append(SECTION_END)
    publish("\n".join(lines), args.write, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
