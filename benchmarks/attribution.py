"""Attribution accuracy and the open-set answer on works the model never saw, 13 authors of the shared corpus.

    python benchmarks/attribution.py [--corpus ../shared/corpus] [--workspace DIR] [--write docs/benchmarks.md]
                                     [--results FILE.json] [--render FILE.json]

1. Builds `ru-classics` with dvoinik's own corpus stage (or reuses `--workspace`'s built
   corpus), so the texts are read, cleaned and deduplicated the way users get them.
2. Two splits of each author's works into training and test works (whole works, seeded
   orders 2024 and 7, about 20% of the author's words held out, never more than half, at
   least one work on each side). The first is the split earlier versions were measured
   on ("the corpus's test works"); the second is a second look at other unseen works.
3. On each split, fits the shipped model (`StyleSettings()`) on the training works and
   attributes samples of 500, 1,000, 2,000 and 5,000 consecutive words drawn from the
   test works (up to --per-author per author and size). Reports top-1 accuracy of the
   shipped combination, of each of its four views alone (the character and word SVMs,
   Cosine Delta's word and character views), of the previous model (Cosine Delta, both
   views averaged: exactly what `dvoinik style` shipped before), and of a plain
   scikit-learn baseline fitted on the same 1,000-word chunks (`TfidfVectorizer` on
   character 2–4-grams, sublinear tf, `LinearSVC`, library defaults otherwise).
4. The open-set answer: the model's own calibration (every author in turn left out,
   scored by folds not fitted on it): AUROC and the share of outsiders caught at the 5%
   false-alarm rate, by length; and the false alarms on the test works, by author.
5. Fits the shipped model on every work and prints the weights and detector that
   `stylometry.py` uses as defaults for corpora too small to calibrate.

`--results` keeps the measurements as JSON; `--render` writes the section from such a
file without measuring again.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sections import publish

from dvoinik.corpus.build import Document, build_corpus, load_documents
from dvoinik.evaluation.ngrams import chunk_texts, normalize
from dvoinik.evaluation.stylometry import (
    StyleModel,
    StyleSettings,
    attribute_many,
    fit_style_model,
    with_min_words,
    work_id,
)
from dvoinik.workspace import add_sources, init_workspace, load_workspace

ROOT = Path(__file__).resolve().parents[1]
SECTION_START = "<!-- attribution:start -->"
SECTION_END = "<!-- attribution:end -->"
SIZES = (500, 1000, 2000, 5000)
SPLIT_SEEDS = (2024, 7)  # 2024: the split of earlier measurements
HELD_SHARE, HELD_CAP = 0.2, 0.5
VIEWS = ("characters", "words", "Delta words", "Delta characters")

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


def fit(texts: dict[str, list[tuple[str, str]]], what: str) -> tuple[StyleModel, float]:
    started = time.perf_counter()
    with progress_bar() as bar:
        task = bar.add_task(what, total=None)

        def on_progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=f"{what}: {stage}", completed=done, total=total)

        model = fit_style_model(texts, StyleSettings(), on_progress)
    return model, time.perf_counter() - started


def plain_baseline(train: dict[str, list[Document]]):
    """scikit-learn's TfidfVectorizer (character 2–4-grams, sublinear tf) and LinearSVC, on 1,000-word chunks."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    chunks, labels = [], []
    for author, docs in sorted(train.items()):
        for doc in docs:
            for chunk in chunk_texts(normalize(doc.text), 1000):
                chunks.append(chunk)
                labels.append(author)
    model = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(2, 4), sublinear_tf=True), LinearSVC())
    return model.fit(chunks, labels)


def measure_split(documents: dict[str, list[Document]], seed: int, per_author: int, plain: bool) -> dict:
    train, test = split_works(documents, seed)
    model, seconds = fit(texts_by_author(train), f"split {seed}: fitting")
    baseline = plain_baseline(train) if plain else None
    lenient = with_min_words(model, 1)
    out: dict = {"seed": seed, "fit_seconds": seconds, "train": {a: len(d) for a, d in train.items()},
                 "test": {a: len(d) for a, d in test.items()}, "sizes": {}, "calibration": asdict(model.calibration)}
    for size in SIZES:
        samples = draw_samples(test, size, per_author, seed=seed)
        truth = [a for a, _ in samples]
        started = time.perf_counter()
        results = attribute_many(lenient, [t for _, t in samples])
        attribute_seconds = time.perf_counter() - started
        right = np.array([r.best.author == a for r, a in zip(results, truth)])
        confidence = np.array([r.confidence for r in results])
        row = {
            "samples": len(samples), "authors": len(set(truth)), "seconds": attribute_seconds,
            "combined": float(right.mean()), "confidence": float(confidence.mean()),
            **{view: float(np.mean([r.views[view] == a for r, a in zip(results, truth)])) for view in VIEWS},
            "previous": float(np.mean([min(r.ranking, key=lambda s: s.distance).author == a
                                       for r, a in zip(results, truth)])),
            "false_alarms": float(np.mean([r.outsider for r in results])),
            "false_alarms_by_author": {a: float(np.mean([r.outsider for r, t in zip(results, truth) if t == a]))
                                       for a in sorted(set(truth))},
            "samples_by_author": {a: truth.count(a) for a in sorted(set(truth))},
            "accuracy_by_author": {a: float(right[[t == a for t in truth]].mean()) for a in sorted(set(truth))},
        }
        if baseline is not None:
            row["plain"] = float(np.mean(baseline.predict([normalize(t) for _, t in samples]) == np.array(truth)))
        out["sizes"][size] = row
        err.print(f"split {seed}, {size} words: {json.dumps({k: v for k, v in row.items() if not isinstance(v, dict)})}")
    return out


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def pooled(row: dict, authors: list[str]) -> float | None:
    """The false-alarm rate over these authors' samples."""
    counts = row.get("samples_by_author", {})
    weights = [counts.get(a, 1) for a in authors]
    if not authors:
        return None
    return sum(row["false_alarms_by_author"][a] * w for a, w in zip(authors, weights)) / sum(weights)


def section(results: list[dict], final: dict, args: argparse.Namespace, started: float, works: int) -> list[str]:
    lines = [
        SECTION_START,
        "## Stylometric attribution",
        "",
        f"`python benchmarks/attribution.py --write docs/benchmarks.md` on {platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, {datetime.date.today().isoformat()}; "
        f"{time.perf_counter() - started:.0f} s in all. `ru-classics` built by dvoinik's corpus stage ({works} works "
        f"after deduplication), split by whole work twice; samples of consecutive words from the test works, up to "
        f"{args.per_author} per author and size (an author whose test works are all shorter than a size has none "
        "of it). Shipped settings: " + ", ".join(f"{k}={v}" for k, v in asdict(StyleSettings()).items()) + ".",
        "",
        "Top-1 accuracy on test works (works the model never saw). *Shipped*: the calibrated combination; then each "
        "of its views alone; *previous*: Cosine Delta, word and character views averaged (the model shipped before); "
        "*plain SVM*: scikit-learn's TfidfVectorizer(char 2–4, sublinear tf) + LinearSVC on the same chunks.",
        "",
    ]
    has_plain = "plain" in next(iter(results[0]["sizes"].values()))
    head = "| split | sample | samples (authors) | **shipped** | characters (SVM) | words (SVM) | Delta words | " \
           "Delta characters | previous | " + ("plain SVM | " if has_plain else "") + "mean confidence |"
    lines += [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if has_plain else "") + "---:|"]
    for r in results:
        for size, row in r["sizes"].items():
            cells = [f"{r['seed']}", f"{int(size):,} words", f"{row['samples']} ({row['authors']})",
                     f"**{pct(row['combined'])}**", *(pct(row[v]) for v in VIEWS), pct(row["previous"]),
                     *([pct(row["plain"])] if has_plain else []), pct(row["confidence"])]
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        held = ", ".join(f"{a} {r['train'][a]}/{r['test'][a]}" for a in sorted(r["test"]))
        lines.append(f"Split {r['seed']}: {sum(r['train'].values())} training works, {sum(r['test'].values())} test "
                     f"works ({held}: train/test); fitting took {r['fit_seconds']:.0f} s.")
        lines.append("")
    first = results[0]
    cal = first["calibration"]
    open_set = cal["open_set"]
    lines += [
        "### None of them",
        "",
        f"Calibration of the split-{first['seed']} model: {cal['folds']} folds, each leaving some authors out entirely "
        "(every author is the outsider once) and holding some works of the others out; each fold's samples scored by "
        f"a detector fitted on the other folds, its thresholds set on them too. {open_set['insiders']} insider and "
        f"{open_set['outsiders']} outsider samples; the threshold flags 5% of the insiders, set per length.",
        "",
        "| sample | AUROC | outsiders caught | false alarms | insiders attributed right |",
        "|---|---:|---:|---:|---:|",
    ]
    for length, row in open_set["by_length"].items():
        lines.append(f"| {int(length):,} words | {row['auroc']:.3f} | {pct(row['detected'])} | {pct(row['false_alarms'])} "
                     f"| {pct(cal['by_length'].get(length))} |")
    lines.append(f"| all | {open_set['auroc']:.3f} | {pct(open_set['detected'])} | {pct(open_set['false_alarms'])} "
                 f"| {pct(cal['accuracy'])} |")
    lines += [
        "",
        "The same models on the test works (insiders all: their authors are in the model). An author with a "
        "single training work was never an insider in calibration (nothing of theirs could be held out), and their "
        "other works are the ones most often called outsiders:",
        "",
        "| split | sample | false alarms | authors with 2+ training works | authors with 1 (which) |",
        "|---|---|---:|---:|---|",
    ]
    for r in results:
        single = sorted(a for a, n in r["train"].items() if n < 2)
        for size, row in r["sizes"].items():
            by_author = row["false_alarms_by_author"]
            many = [a for a in by_author if a not in single]
            few = [a for a in by_author if a in single]
            lines.append(f"| {r['seed']} | {int(size):,} words | {pct(row['false_alarms'])} | "
                         f"{pct(pooled(row, many))} | {pct(pooled(row, few))} "
                         f"({', '.join(f'{a} {pct(by_author[a])}' for a in few)}) |")
    lines += [
        "",
        "Test-work samples between the calibration's lengths (500, 2,000 and 5,000 words) use thresholds "
        f"interpolated in log(length). Fitting on all {works} works: {final['seconds']:.0f} s.",
        SECTION_END,
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--workspace", type=Path, default=None, help="reuse this workspace's built corpus")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file's attribution section")
    parser.add_argument("--per-author", type=int, default=20, help="test samples per author and size")
    parser.add_argument("--splits", type=int, default=len(SPLIT_SEEDS), help="how many of the splits to run")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain scikit-learn baseline")
    parser.add_argument("--results", type=Path, default=None, help="also write the measurements to this JSON file")
    parser.add_argument("--render", type=Path, default=None, help="write the section from this JSON file, measuring nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.render:
        saved = json.loads(args.render.read_text(encoding="utf-8"))
        lines = section(saved["results"], saved["final"], args, started - saved["seconds"], saved["works"])
        publish("\n".join(lines), args.write, SECTION_START, SECTION_END)
        return

    if args.workspace:
        documents = load_documents(load_workspace(args.workspace).corpus_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            documents = build_documents(args.corpus, Path(tmp))
    by_author: dict[str, list[Document]] = defaultdict(list)
    for doc in documents:
        by_author[doc.author].append(doc)

    results = [measure_split(by_author, seed, args.per_author, not args.no_plain) for seed in SPLIT_SEEDS[: args.splits]]
    everything, seconds = fit(texts_by_author(by_author), "fitting on every work")
    detector = everything.detector.to_dict()
    detector.pop("calibration")
    print("DEFAULT_COMBINATION =", tuple(round(x, 4) for x in everything.combination))
    print("DEFAULT_DETECTOR =", json.dumps({k: [round(x, 4) for x in v] if isinstance(v, list) else v
                                            for k, v in json.loads(json.dumps(detector)).items()}))
    final = {"seconds": seconds, "calibration": asdict(everything.calibration), "combination": everything.combination,
             "detector": detector}
    if args.results:
        args.results.write_text(json.dumps({"results": results, "final": final, "works": len(documents),
                                            "seconds": time.perf_counter() - started}, indent=1), encoding="utf-8")
    publish("\n".join(section(results, final, args, started, len(documents))), args.write, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
