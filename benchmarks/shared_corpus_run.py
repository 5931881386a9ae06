"""A whole run on real prose: Chekhov as the target, three influences, train from scratch, evaluate every checkpoint.

    python benchmarks/shared_corpus_run.py --folder /tmp/chekhov [--model small] [--max-steps 2400] [--minutes 4]

Steps, each skipped when its output exists (so the corpus can be built on one machine
and the training run on another): the workspace and corpus from `../shared/corpus`,
training, `dvoinik evaluate`. The evaluation report lands in
`FOLDER/runs/<run>/evaluation/report.html`; docs/evaluation.md shows one such report.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dvoinik.corpus.build import build_corpus
from dvoinik.evaluation.evaluate import evaluate_run
from dvoinik.training.loop import train
from dvoinik.workspace import add_sources, init_workspace, load_workspace, write_settings

ROOT = Path(__file__).resolve().parents[1]
TARGET = "chekhov"
INFLUENCES = ("turgenev", "gorky", "andreev")


def prepare(folder: Path, corpus: Path):
    if (folder / "corpus" / "documents.jsonl").is_file():
        return load_workspace(folder)
    classics = corpus / "ru-classics"
    ws = init_workspace(folder, name="Чехов (shared corpus)")
    ws, _ = add_sources(ws, [classics / TARGET], author="Чехов", role="target")
    for author in INFLUENCES:
        ws, _ = add_sources(ws, [classics / author], author=author.capitalize(), role="influence", weight=1.0)
    build_corpus(ws)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--model", default="small")
    parser.add_argument("--max-steps", type=int, default=2400)
    parser.add_argument("--save-every", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--corpus-only", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    ws = prepare(args.folder, args.corpus)
    print(f"corpus ready in {time.perf_counter() - started:.0f} s", flush=True)
    if args.corpus_only:
        return
    ws = write_settings(ws, "train", {
        "base": args.model, "vocab_size": 8000, "block_size": args.block_size, "batch_size": args.batch_size,
        "max_steps": args.max_steps, "save_every": args.save_every, "eval_every": args.save_every,
        "time_budget_minutes": args.minutes, "log_every": 50,
    })
    run = f"{args.model}-scratch"
    if not (ws.runs_dir / run).is_dir():
        result = train(ws, run=run)
        print(f"trained {result.steps} steps ({result.stop_reason}) in {time.perf_counter() - started:.0f} s, "
              f"{result.tokens_per_second:,.0f} tokens/s", flush=True)
    report = evaluate_run(ws, run, on_progress=lambda what, done, total: print(f"  {what} ({done}/{total})", flush=True))
    print(f"evaluated in {time.perf_counter() - started:.0f} s; recommended {report.recommended}: "
          f"{report.report['reason']}")
    for c in report.report["checkpoints"]:
        s = c["samples"]
        print(f"  {c['name']}: ppl {c['val_target_ppl']:.1f}, target {s['target_share']:.0%}, "
              f"longest span mean {s['longest_span']['mean']:.1f} max {s['longest_span']['max']:.0f}, "
              f"extraction exact {c['extraction']['exact_share']:.0%}")


if __name__ == "__main__":
    main()
