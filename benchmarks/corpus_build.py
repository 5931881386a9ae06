"""Corpus build speed on the shared corpus, against the cost of only reading its files.

    python benchmarks/corpus_build.py [--corpus ../shared/corpus] [--write docs/benchmarks.md]

Builds a workspace from all 256 works of `ru-classics` (one target author, twelve
influences) plus the `formats/` samples, with 1 worker and with all cores, and measures
in the same run the baseline every build pays anyway: decompressing and decoding the
same files. Prints a table and, with --write, replaces the corpus section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import lzma
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from sections import publish

from dvoinik.corpus.build import build_corpus
from dvoinik.workspace import add_sources, init_workspace

ROOT = Path(__file__).resolve().parents[1]
SECTION_START = "<!-- corpus-build:start -->"
SECTION_END = "<!-- corpus-build:end -->"


def baseline_read(classics: Path) -> tuple[float, int]:
    """Seconds to decompress and decode every work; bytes of text."""
    started = time.perf_counter()
    total = 0
    for path in sorted(classics.glob("*/*.txt.xz")):
        total += len(lzma.decompress(path.read_bytes()).decode("utf-8").encode("utf-8"))
    return time.perf_counter() - started, total


def build(corpus: Path, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ws = init_workspace(Path(tmp) / "ws", name="ru-classics")
        classics = corpus / "ru-classics"
        authors = sorted(p.name for p in classics.iterdir() if p.is_dir())
        ws, _ = add_sources(ws, [classics / "andreev"], author="andreev", role="target")
        for author in authors:
            if author != "andreev":
                ws, _ = add_sources(ws, [classics / author], author=author, role="influence")
        ws, _ = add_sources(ws, [corpus / "formats"], author="formats", role="influence")
        ws = replace(ws, corpus=replace(ws.corpus, workers=workers))
        started = time.perf_counter()
        result = build_corpus(ws)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "report": result.report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--write", type=Path, default=None, help="update this Markdown file's corpus section")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the fastest counts")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    read_seconds, text_bytes = min(baseline_read(args.corpus / "ru-classics") for _ in range(args.repeat))
    runs = {
        workers: min((build(args.corpus, workers) for _ in range(args.repeat)), key=lambda run: run["seconds"])
        for workers in sorted({1, cores})
    }
    mb = runs[cores]["report"]["speed"]["input_mb"]
    report = runs[cores]["report"]
    rows = [
        ("read only (xz + UTF-8 decode), 1 process", read_seconds, text_bytes / 1e6 / read_seconds, 1.0),
    ]
    for workers, run in runs.items():
        rows.append(
            (f"full build, {workers} worker(s)", run["seconds"], mb / run["seconds"], run["seconds"] / read_seconds)
        )
    table = [
        "| step | seconds | MB/s | × read-only time |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {sec:.2f} | {rate:.1f} | {ratio:.2f} |" for name, sec, rate, ratio in rows],
    ]
    stages = report["speed"]
    dups = report["duplicates"]
    paragraphs = report["paragraphs_removed"]["counts"]
    lines = [
        SECTION_START,
        "## Corpus build",
        "",
        f"`python benchmarks/corpus_build.py` on {platform.machine()}, {cores} cores, Python {platform.python_version()}: "
        f"all of `ru-classics` (256 works, 13 authors) plus the 6 `formats/` samples, "
        f"{mb:.1f} MB of text after decompression; fastest of {args.repeat} runs each. Goal: at least 5 MB/s.",
        "",
        *table,
        "",
        f"Inside the {cores}-worker build: reading and cleaning {stages['read_clean_seconds']:.2f} s, "
        f"deduplication {stages['dedup_seconds']:.2f} s, the rest (split, mix, writing) "
        f"{stages['total_seconds'] - stages['read_clean_seconds'] - stages['dedup_seconds']:.2f} s. "
        f"Found {len(dups)} duplicate works; removed paragraphs: "
        f"{', '.join(f'{kind} {n}' for kind, n in paragraphs.items()) or 'none'}.",
        SECTION_END,
    ]
    publish("\n".join(lines), args.write, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
