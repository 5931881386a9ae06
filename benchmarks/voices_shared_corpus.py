"""One model, four voices, on real prose: a voices run on the shared corpus and its attribution matrix.

    python benchmarks/voices_shared_corpus.py --folder /tmp/voices4 [--model tiny] [--max-steps 600] [--minutes 30]
        [--kb N] [--vocab-size V] [--label NAME] [--write docs/benchmarks.md]

Chekhov (the target), Turgenev, Gorky and Andreev, every author at weight 1, a built-in
model trained from scratch with `[train] voices = true`, then `dvoinik evaluate`: for each
voice, the share of its samples the stylometry model gives to each author, beside the same
matrix for real held-out text. `--kb N` takes each author's works in order until N kilobytes of
(compressed) files, a quarter held out: a corpus small enough for a CPU to train voices on in
the time the whole corpus needs to begin learning the language. Steps are skipped when their output exists, so a killed
run picks up where it was.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from sections import publish

from dvoinik.corpus.build import build_corpus
from dvoinik.evaluation.evaluate import evaluate_run
from dvoinik.runs import find_run, run_token_set
from dvoinik.training.loop import train
from dvoinik.training.metrics import read_metrics
from dvoinik.workspace import add_sources, init_workspace, load_workspace, write_settings

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = (("chekhov", "Чехов", "target"), ("turgenev", "Тургенев", "influence"),
           ("gorky", "Горький", "influence"), ("andreev", "Андреев", "influence"))
RUN = "voices"


def first_works(folder: Path, kilobytes: int) -> list[Path]:
    """The author's works in name order until `kilobytes` of files (at least two: one to hold out)."""
    chosen, size = [], 0
    for path in sorted(folder.iterdir()):
        if size >= kilobytes * 1024 and len(chosen) >= 2:
            break
        chosen.append(path)
        size += path.stat().st_size
    return chosen


def prepare(folder: Path, corpus: Path, kilobytes: int):
    if (folder / "corpus" / "documents.jsonl").is_file():
        return load_workspace(folder)
    ws = init_workspace(folder, name="Четыре голоса (shared corpus)")
    for directory, name, role in AUTHORS:
        where = corpus / "ru-classics" / directory
        ws, _ = add_sources(ws, first_works(where, kilobytes) if kilobytes else [where], author=name, role=role,
                            weight=1.0)
    if kilobytes:
        ws = write_settings(ws, "corpus", {"val_fraction": 0.25})
    build_corpus(ws)
    return ws


def table(matrix: dict, label: str) -> list[str]:
    authors = matrix["authors"]
    lines = [f"| {label} | " + " | ".join(authors) + " | texts |", "|---|" + "---:|" * (len(authors) + 1)]
    for name, shares in matrix["rows"].items():
        cells = [f"**{shares.get(a, 0.0):.0%}**" if a == name else f"{shares.get(a, 0.0):.0%}" for a in authors]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {matrix['samples'][name]} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--kb", type=int, default=0, help="each author's works up to N kilobytes of files (0: all)")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--label", default="", help="a name for the section (one per corpus measured)")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    ws = prepare(args.folder, args.corpus, args.kb)
    ws = write_settings(ws, "train", {
        "base": args.model, "vocab_size": args.vocab_size, "block_size": args.block_size, "batch_size": args.batch_size,
        "max_steps": args.max_steps, "save_every": args.max_steps, "eval_every": args.max_steps,
        "time_budget_minutes": args.minutes, "log_every": 50, "voices": True, "learning_rate": 2e-3,
    })
    ws = write_settings(ws, "evaluate", {"prompts": 48, "prompt_tokens": 16, "sample_tokens": 96,
                                         "extraction_prompts": 8})
    print(f"corpus ready in {time.perf_counter() - started:.0f} s", flush=True)
    if not (ws.runs_dir / RUN / "run.json").is_file():
        result = train(ws, run=RUN)
        print(f"trained {result.steps} steps ({result.stop_reason}) in {time.perf_counter() - started:.0f} s", flush=True)
    report = evaluate_run(ws, RUN, on_progress=lambda what, done, total: print(f"  {what}", flush=True)).report
    voices = report["voices"]
    settings = load_workspace(args.folder).train
    last_ppl = next(m["ppl"] for m in reversed(read_metrics(ws.runs_dir / RUN)) if m["kind"] == "train")
    diagonal = [voices["samples"]["rows"][a].get(a, 0.0) for a in voices["samples"]["rows"]]
    start, end = (f"<!-- voices-shared-corpus{'-' + args.label if args.label else ''}:{edge} -->"
                  for edge in ("start", "end"))
    tokens = sum(a.train_tokens for a in run_token_set(ws, find_run(ws, RUN)).authors)
    corpus = f"each author's first works, up to {args.kb} KB of files" if args.kb else "every work"
    lines = [start, f"## Voices on the shared corpus: one model, four authors{f' ({args.label})' if args.label else ''}",
             "", f"`python benchmarks/voices_shared_corpus.py{f' --kb {args.kb}' if args.kb else ''}` — "
             f"{', '.join(name for _, name, _ in AUTHORS)} at weight 1, {corpus} ({tokens:,} training tokens); "
             f"built-in `{settings.base}` from scratch with voices (a BPE of {settings.vocab_size}), {voices['checkpoint']} "
             f"({settings.batch_size} × {settings.block_size} tokens a step, final training perplexity "
             f"{last_ppl:.0f}); {platform.processor() or platform.machine()}. "
             f"Prompts of {report['settings']['prompt_tokens']} tokens from every author's held-out works "
             f"({voices['prompts']} in all, the same for every voice), {report['sample_tokens']} new tokens each "
             "(nucleus), attributed by the workspace's stylometry model:", ""]
    lines += table(voices["samples"], "voice") + [""] + table(voices["real"], "real text") + [""]
    real = [voices["real"]["rows"][a].get(a, 0.0) for a in voices["real"]["rows"]]
    lines += [f"Mean of the diagonal: {sum(diagonal) / len(diagonal):.0%} of a voice's samples read as its own author "
              f"(chance: 25%; real text: {sum(real) / len(real):.0%}).", "", end]
    publish("\n".join(lines), args.write, start, end)


if __name__ == "__main__":
    main()
