"""Build a workspace's corpus: read, clean, deduplicate, split by work, mix, and report.

Reads the sources recorded in `dvoinik.toml`; writes `corpus/documents.jsonl`,
`corpus/report.json` and `corpus/report.md`. The three files are written into a
temporary folder that replaces `corpus/` only when all of them are complete, so a
killed build leaves the previous corpus (or none), never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dvoinik.atomic import building_folder
from dvoinik.corpus.clean import clean_text
from dvoinik.corpus.dedup import (
    DedupSettings,
    drop_paragraphs,
    find_duplicate_documents,
    find_repeated_paragraphs,
)
from dvoinik.corpus.readers import list_source_files, read_file
from dvoinik.corpus.report import render_markdown
from dvoinik.faults import REBUILD_CORPUS, damaged, read_json, read_json_lines
from dvoinik.paths import shown
from dvoinik.workspace import CorpusSettings, Source, Workspace

DOCUMENTS_FILE = "documents.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


class CorpusError(Exception):
    """Nothing usable came out of the sources; the message says why."""


@dataclass(frozen=True)
class FileTask:
    path: Path
    label: str  # the path as the report shows it: relative to the folder the user added
    author: str
    role: str
    sections: str
    language: str


@dataclass
class CleanedWork:
    """One work after reading and cleaning, before corpus-wide deduplication."""

    source: str
    author: str
    role: str
    title: str
    format: str
    encoding: str | None
    text: str
    counts: Counter


@dataclass
class FileOutcome:
    label: str
    raw_bytes: int
    works: list[CleanedWork] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    """A line of documents.jsonl."""

    id: str
    author: str
    role: str
    title: str
    source: str
    split: str
    text: str


@dataclass
class BuildResult:
    documents: list[Document]
    report: dict
    corpus_dir: Path


# --- reading and cleaning (runs in worker processes) ------------------------------------


def _read_and_clean(task: FileTask) -> FileOutcome:
    result = read_file(task.path, sections=task.sections)
    prefix = shown(task.path)  # how read_file names its sources

    def relabel(source: str) -> str:
        return task.label + source[len(prefix):] if source.startswith(prefix) else source

    outcome = FileOutcome(label=task.label, raw_bytes=0)
    outcome.skipped = [(relabel(s.source), s.reason) for s in result.skipped]
    outcome.notes = [(relabel(s.source), s.reason) for s in result.notes]
    for raw in result.texts:
        outcome.raw_bytes += len(raw.text.encode("utf-8", "replace"))
        cleaned = clean_text(
            raw.text,
            structured=raw.structured,
            author_hint=raw.author or task.author,
            title_hint=raw.title,
            language=task.language,
        )
        source = relabel(raw.source)
        title = raw.title or cleaned.title or _title_from_source(source)
        outcome.works.append(
            CleanedWork(
                source=source,
                author=task.author,
                role=task.role,
                title=title,
                format=raw.format,
                encoding=raw.encoding,
                text=cleaned.text,
                counts=cleaned.counts,
            )
        )
    return outcome


def read_text_file(path: Path, language: str) -> str:
    """One user file (any format and encoding the corpus reads) as one cleaned text, works joined by blank lines.

    What `check` and `style` read: cleaned like the corpus, so quotes, dashes and
    hyphenation compare equal with the training texts.
    """
    result = read_file(path)
    if not result.texts:
        reason = result.skipped[0].reason if result.skipped else "no text found"
        raise CorpusError(f"{shown(path)}: {reason}")
    works = [clean_text(raw.text, structured=raw.structured, author_hint=raw.author, title_hint=raw.title,
                        language=language).text for raw in result.texts]
    text = "\n\n".join(w for w in works if w.strip())
    if not text.strip():
        raise CorpusError(f"{shown(path)}: no text left after cleaning")
    return text


def _title_from_source(source: str) -> str:
    name = source.split("!")[-1].split("#")[0]
    name = Path(name).name
    for suffix in (".gz", ".xz", ".bz2", ".zip", ".txt", ".fb2", ".epub", ".html", ".htm", ".docx"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def collect_tasks(sources: Iterable[Source], language: str) -> list[FileTask]:
    """Every file under every source, labelled relative to the folder the user added."""
    tasks = []
    for source in sources:
        base = source.path.parent
        for path in list_source_files(source.path):
            label = shown(os.path.relpath(path, base))  # a name that is not UTF-8 shown as \xNN
            tasks.append(FileTask(path, label, source.author, source.role, source.sections, language))
    return tasks


def read_sources(
    tasks: list[FileTask], workers: int, on_file: Callable[[FileOutcome], None] | None = None
) -> list[FileOutcome]:
    """Read and clean every file, in parallel, keeping the input order (so builds are repeatable)."""
    outcomes: list[FileOutcome] = []
    if workers <= 1 or len(tasks) < 2:
        for task in tasks:
            outcomes.append(_read_and_clean(task))
            if on_file:
                on_file(outcomes[-1])
        return outcomes
    with worker_pool(workers) as pool:
        # Largest files first keeps both workers busy to the end; results are put back in order.
        order = sorted(range(len(tasks)), key=lambda i: -_size(tasks[i].path))
        futures = {i: pool.submit(_read_and_clean, tasks[i]) for i in order}
        results: dict[int, FileOutcome] = {}
        for i in order:
            results[i] = futures[i].result()
            if on_file:
                on_file(results[i])
    return [results[i] for i in range(len(tasks))]


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Processes that end with the one that started them: a killed build leaves no workers behind.

    (A worker of a plain pool waits on its task pipe for ever once its parent is killed.)
    """
    return ProcessPoolExecutor(max_workers=workers, initializer=end_with_parent, initargs=(os.getpid(),))


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def end_with_parent(parent: int) -> None:
    """Worker initializer: on Linux the kernel kills this process when its parent dies (prctl PR_SET_PDEATHSIG);
    elsewhere a thread watches for the parent to go."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            _watch_parent(parent)
    else:
        _watch_parent(parent)
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="dvoinik-parent-watch", daemon=True).start()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --- the corpus-wide steps --------------------------------------------------------------


def document_id(source: str) -> str:
    """A short id that stays the same while the source's path (relative to its folder) does."""
    return hashlib.blake2b(source.encode("utf-8"), digest_size=6).hexdigest()


def word_count(text: str) -> int:
    return len(text.split())


def split_by_work(works: list[CleanedWork], ids: list[str], settings: CorpusSettings) -> dict[str, str]:
    """Hold out whole works per author, close to `val_fraction` of the author's words.

    The order is a hash of the seed and the work's id, so the split does not depend on
    the order files were listed in, and adding a work moves few others.
    """
    by_author: dict[str, list[int]] = defaultdict(list)
    for i, work in enumerate(works):
        by_author[work.author].append(i)
    split = {}
    for members in by_author.values():
        role = works[members[0]].role
        words = {i: word_count(works[i].text) for i in members}
        total = sum(words.values())
        wanted_count = 0
        if len(members) >= 2:
            wanted_count = settings.min_val_works if role == "target" else (1 if len(members) >= 3 else 0)
        budget = settings.val_fraction * total
        order = sorted(members, key=lambda i: hashlib.sha256(f"{settings.seed}:{ids[i]}".encode()).hexdigest())
        held: list[int] = []
        held_words = 0
        for i in order:
            if len(held) >= len(members) - 1:
                break
            fits = held_words + words[i] <= 1.5 * budget
            if fits and (held_words < budget or len(held) < wanted_count):
                held.append(i)
                held_words += words[i]
        # Every work too large for the budget: hold out the smallest ones to meet the minimum.
        for i in sorted(order, key=lambda i: words[i]):
            if len(held) >= min(wanted_count, len(members) - 1):
                break
            if i not in held:
                held.append(i)
        for i in members:
            split[ids[i]] = "val" if i in held else "train"
    return split


def mix_shares(documents: list[Document], weights: dict[str, float]) -> dict[str, dict[str, float]]:
    """Each author's share of training characters, raw and after the weights (upsampling).

    Characters stand in for tokens here: the tokenizer is chosen later, and byte-level
    BPE token counts are close to proportional to characters within one language.
    """
    chars: Counter = Counter()
    for doc in documents:
        if doc.split == "train":
            chars[doc.author] += len(doc.text)
    total = sum(chars.values()) or 1
    weighted_total = sum(weights[a] * c for a, c in chars.items()) or 1
    return {
        author: {
            "train_chars": chars[author],
            "raw_share": chars[author] / total,
            "weight": weights[author],
            "effective_share": weights[author] * chars[author] / weighted_total,
        }
        for author in weights
    }


# --- the whole build --------------------------------------------------------------------


def build_corpus(
    ws: Workspace,
    on_start: Callable[[int], None] | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build the corpus of a workspace and write it under `ws.corpus_dir`.

    The callbacks report progress: the number of files, each file read, and the name of
    each later stage as it begins ("deduplicating", "writing").
    """
    stage = on_stage or (lambda name: None)
    settings = ws.corpus
    started = time.perf_counter()
    if not ws.sources:
        raise CorpusError(f"{ws.config_path}: no sources yet; add some with `dvoinik add PATH --author NAME`")
    tasks = collect_tasks(ws.sources, ws.language)
    if on_start:
        on_start(len(tasks))
    workers = settings.workers or os.cpu_count() or 1
    outcomes = read_sources(tasks, workers, on_file)
    read_seconds = time.perf_counter() - started

    works = [work for outcome in outcomes for work in outcome.works]
    skipped = [{"source": s, "reason": r} for o in outcomes for s, r in o.skipped]
    notes = [{"source": s, "reason": r} for o in outcomes for s, r in o.notes]
    raw_bytes = sum(o.raw_bytes for o in outcomes)
    cleaning: dict[str, Counter] = defaultdict(Counter)
    for work in works:
        cleaning[work.author].update(work.counts)

    too_short = [w for w in works if word_count(w.text) < settings.min_document_words]
    for work in too_short:
        skipped.append({"source": work.source, "reason": f"fewer than {settings.min_document_words} words after cleaning"})
    works = [w for w in works if word_count(w.text) >= settings.min_document_words]

    stage("deduplicating")
    # Earlier wins in deduplication: the target author's copy, then the longer text.
    works.sort(key=lambda w: (w.role != "target", -len(w.text), w.source))
    ids = _unique_ids([document_id(w.source) for w in works])
    dedup_settings = DedupSettings(
        near_threshold=settings.near_duplicate_threshold,
        shingle_words=settings.shingle_words,
        containment_threshold=settings.containment_threshold,
        repeated_paragraph_min_words=settings.repeated_paragraph_min_words,
        boilerplate_min_docs=settings.boilerplate_min_docs,
        boilerplate_edge_paragraphs=settings.boilerplate_edge_paragraphs,
        seed=settings.seed,
    )
    texts = [w.text for w in works]
    duplicates = find_duplicate_documents(texts, dedup_settings)
    removed = {d.removed for d in duplicates}
    paragraphs = find_repeated_paragraphs(texts, removed, dedup_settings)
    by_document: dict[int, set[str]] = defaultdict(set)
    for p in paragraphs:
        by_document[p.document].add(p.text)
    for index, dropped in by_document.items():
        works[index].text = drop_paragraphs(works[index].text, dropped)
    emptied = [i for i in by_document if word_count(works[i].text) < settings.min_document_words and i not in removed]
    for i in emptied:
        skipped.append({"source": works[i].source, "reason": "nothing left after removing repeated paragraphs"})
    removed |= set(emptied)
    dedup_seconds = time.perf_counter() - started - read_seconds

    kept = [i for i in range(len(works)) if i not in removed]
    if not kept:
        raise CorpusError(_nothing_usable_message(tasks, skipped))
    kept_works = [works[i] for i in kept]
    kept_ids = [ids[i] for i in kept]
    split = split_by_work(kept_works, kept_ids, settings)
    # documents.jsonl lists works in source order, which is what a reader of the file expects.
    order = sorted(range(len(kept_works)), key=lambda k: (kept_works[k].author, kept_works[k].source))
    documents = [
        Document(
            id=kept_ids[k],
            author=kept_works[k].author,
            role=kept_works[k].role,
            title=kept_works[k].title,
            source=kept_works[k].source,
            split=split[kept_ids[k]],
            text=kept_works[k].text,
        )
        for k in order
    ]

    weights = _author_weights(ws.sources)
    authors = _author_table(documents, ws.sources)
    report = {
        "workspace": ws.name,
        "settings": asdict(settings),
        "sources": [
            {"path": shown(s.path), "author": s.author, "role": s.role, "weight": s.weight, "sections": s.sections}
            for s in ws.sources
        ],
        "files": {
            "listed": len(tasks),
            "read": sum(1 for o in outcomes if o.works),
            "works_read": sum(len(o.works) for o in outcomes),
            "skipped": skipped,
            "notes": notes,
            "formats": dict(Counter(w.format for o in outcomes for w in o.works)),
            "encodings": dict(Counter(w.encoding or "n/a" for o in outcomes for w in o.works)),
        },
        "cleaning": {author: dict(sorted(c.items())) for author, c in sorted(cleaning.items())},
        "duplicates": [
            {
                "removed": _describe(works[d.removed], ids[d.removed]),
                "duplicate_of": _describe(works[d.kept], ids[d.kept]),
                "kind": d.kind,
                "similarity": round(d.similarity, 4),
            }
            for d in duplicates
        ],
        "paragraphs_removed": _paragraph_summary(paragraphs, works, ids),
        "authors": authors,
        "warnings": corpus_warnings(authors),
        "mix": mix_shares(documents, weights),
        "totals": _totals(documents),
        "speed": {
            "input_mb": raw_bytes / 1e6,
            "read_clean_seconds": round(read_seconds, 3),
            "dedup_seconds": round(dedup_seconds, 3),
            "workers": workers,
        },
    }
    corpus_dir = ws.corpus_dir
    total_seconds = time.perf_counter() - started
    report["speed"]["total_seconds"] = round(total_seconds, 3)
    report["speed"]["mb_per_second"] = round(raw_bytes / 1e6 / max(total_seconds, 1e-9), 2)
    stage("writing")
    try:
        write_corpus(corpus_dir, documents, report)
    except OSError as exc:  # a read-only workspace or a full disk is the user's to fix, not a traceback
        raise CorpusError(f"{corpus_dir}: cannot write the corpus: {exc.strerror or exc}") from exc
    return BuildResult(documents=documents, report=report, corpus_dir=corpus_dir)


def corpus_warnings(authors: dict[str, dict]) -> list[str]:
    """What makes the corpus weaker than the user likely meant, each in one line."""
    warnings = []
    if not any(row["role"] == "target" for row in authors.values()):
        warnings.append("no target author: record one with `dvoinik add PATH --author NAME --role target`")
    for author, row in authors.items():
        if row["train_works"] + row["val_works"] == 0:
            warnings.append(f"{author}: no usable text (every file was skipped or a duplicate)")
        elif row["role"] == "target" and row["val_works"] == 0:
            warnings.append(
                f"{author}: only one work, so none is held out and validation cannot measure the "
                "author; add more works, or split books into chapters with `--sections chapters`"
            )
    return warnings


def _unique_ids(ids: list[str]) -> list[str]:
    seen: Counter = Counter()
    unique = []
    for item in ids:
        seen[item] += 1
        unique.append(item if seen[item] == 1 else f"{item}-{seen[item]}")
    return unique


def _describe(work: CleanedWork, doc_id: str) -> dict:
    return {"id": doc_id, "author": work.author, "title": work.title, "source": work.source}


def _paragraph_summary(paragraphs, works: list[CleanedWork], ids: list[str]) -> dict:
    """Every removed paragraph: boilerplate grouped by text with the works it left, repeats one by one."""
    summary: dict = {"counts": dict(Counter(p.kind for p in paragraphs))}
    boilerplate: dict[str, dict] = {}
    for p in paragraphs:
        if p.kind == "boilerplate":
            entry = boilerplate.setdefault(p.text, {"text": p.text[:200], "works": p.count, "removed_from": []})
            entry["works"] = max(entry["works"], p.count)
            entry["removed_from"].append(ids[p.document])
    summary["boilerplate"] = sorted(boilerplate.values(), key=lambda e: (-e["works"], e["text"]))
    summary["repeated"] = [
        {
            "text": p.text[:200],
            "removed_from": _describe(works[p.document], ids[p.document]),
            "first_seen_in": _describe(works[p.first_seen], ids[p.first_seen]) if p.first_seen is not None else None,
        }
        for p in paragraphs
        if p.kind == "repeated"
    ]
    return summary


def _author_weights(sources: Iterable[Source]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for source in sources:
        weights[source.author] = max(weights.get(source.author, 0.0), source.weight)
    return weights


def _author_table(documents: list[Document], sources: Iterable[Source]) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for source in sources:
        table.setdefault(source.author, {"role": source.role, "weight": source.weight})
    for author, row in table.items():
        for split in ("train", "val"):
            docs = [d for d in documents if d.author == author and d.split == split]
            row[f"{split}_works"] = len(docs)
            row[f"{split}_words"] = sum(word_count(d.text) for d in docs)
            row[f"{split}_chars"] = sum(len(d.text) for d in docs)
    return table


def _totals(documents: list[Document]) -> dict:
    return {
        "documents": len(documents),
        "train_documents": sum(1 for d in documents if d.split == "train"),
        "val_documents": sum(1 for d in documents if d.split == "val"),
        "words": sum(word_count(d.text) for d in documents),
        "chars": sum(len(d.text) for d in documents),
    }


def _nothing_usable_message(tasks: list[FileTask], skipped: list[dict]) -> str:
    if not tasks:
        return "the sources hold no files"
    reasons = "; ".join(f"{s['source']}: {s['reason']}" for s in skipped[:3])
    more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
    return f"no usable text in {len(tasks)} file(s): {reasons}{more}"


def write_corpus(corpus_dir: Path, documents: list[Document], report: dict) -> None:
    """Write the three corpus files into a fresh folder, then swap it in for `corpus_dir`."""
    with building_folder(corpus_dir) as staging:
        with open(staging / DOCUMENTS_FILE, "w", encoding="utf-8") as handle:
            for doc in documents:
                handle.write(json.dumps(asdict(doc), ensure_ascii=False))
                handle.write("\n")
        (staging / REPORT_JSON).write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        (staging / REPORT_MD).write_text(render_markdown(report), encoding="utf-8")


def load_documents(corpus_dir: Path) -> list[Document]:
    """Read documents.jsonl back (the next stages start here)."""
    return list(iter_documents(corpus_dir))


def iter_documents(corpus_dir: Path) -> Iterator[Document]:
    """The documents of documents.jsonl one by one; DamagedFileError (one line, naming the line) when one is not."""
    path = corpus_dir / DOCUMENTS_FILE
    names = [f.name for f in fields(Document)]
    for number, value in read_json_lines(path, REBUILD_CORPUS):
        if not isinstance(value, dict) or set(value) != set(names) or \
                not all(isinstance(value[name], str) for name in names):
            missing = [n for n in names if not isinstance(value, dict) or n not in value]
            problem = f"fields missing: {', '.join(missing)}" if missing and isinstance(value, dict) else \
                "not a document (an object with the fields " + ", ".join(names) + ", all text)"
            raise damaged(path, f"line {number}: {problem}", REBUILD_CORPUS)
        yield Document(**value)


def load_report(corpus_dir: Path) -> dict:
    """report.json of the corpus; DamagedFileError when it is not the object `build_corpus` writes."""
    path = corpus_dir / REPORT_JSON
    report = read_json(path, REBUILD_CORPUS)
    if not isinstance(report, dict) or not isinstance(report.get("authors"), dict) or \
            not isinstance(report.get("mix"), dict):
        raise damaged(path, "not a corpus report (no authors and mix)", REBUILD_CORPUS)
    return report
