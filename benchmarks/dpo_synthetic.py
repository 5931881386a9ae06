"""Learning from picks, measured: DPO on synthetic picks that prefer the target's text over an influence's.

    python benchmarks/dpo_synthetic.py --folder /tmp/dpo [--steps 300] [--pairs 200] [--write docs/benchmarks.md]

The demo's two authors at equal weight, a built-in model trained from scratch without
voices (it writes a mix of the two), then `dvoinik train --method dpo` on pairs whose
context is the target's text, the chosen text its real continuation and the rejected one
a passage of the influence (`training/dpo.synthetic_pairs`). Measured before and after:
preference accuracy on held-out pairs, and the share of samples the stylometry model reads
as the target.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

from sections import publish

from dvoinik.corpus.build import build_corpus
from dvoinik.demo import AUTHORS, texts_folder
from dvoinik.evaluation.stylometry import load_or_fit_workspace_model
from dvoinik.evaluation.voices import attribution_shares
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import load_checkpoint
from dvoinik.generation.variants import generate
from dvoinik.runs import find_run, resolve_checkpoint, run_token_set
from dvoinik.training.dpo import synthetic_pairs, train_dpo
from dvoinik.training.loop import train
from dvoinik.workspace import add_sources, init_workspace, load_workspace, write_settings

SECTION_START = "<!-- dpo-synthetic:start -->"
SECTION_END = "<!-- dpo-synthetic:end -->"
PROMPTS = ["Утром", "Он сказал", "В тот день", "Потом", "Она", "Когда", "Вечером", "И тогда"]


def workspace(folder: Path, steps: int, block_size: int, batch_size: int):
    if (folder / "double" / "runs" / "plain" / "run.json").is_file():
        return load_workspace(folder / "double")
    shutil.rmtree(folder, ignore_errors=True)
    for author in AUTHORS:
        shutil.copytree(texts_folder() / author.folder, folder / "texts" / author.folder)
    ws = init_workspace(folder / "double", name="dpo")
    for author in AUTHORS:
        ws, _ = add_sources(ws, [folder / "texts" / author.folder], author=author.name, role=author.role, weight=1.0)
    ws = write_settings(ws, "train", {"base": "tiny", "vocab_size": 2000, "block_size": block_size, "batch_size": batch_size,
                                      "learning_rate": 2e-3, "max_steps": steps, "save_every": steps,
                                      "time_budget_minutes": 0.0})
    build_corpus(ws)
    train(ws, run="plain")
    return ws


def target_share(folder: Path, style, length: int) -> float:
    double = load_checkpoint(folder, trained_length=length)
    texts = [v.text for i, prompt in enumerate(PROMPTS)
             for v in generate(double, prompt, decoding_for("nucleus", max_new_tokens=length - 8, seed=i), n=6).variants]
    return attribution_shares(style, texts).get(AUTHORS[0].name, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300, help="training steps of the base run")
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--dpo-steps", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.0, help="0: [dpo]'s default for the method")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    ws = workspace(args.folder, args.steps, args.block_size, args.batch_size)
    run = find_run(ws, "plain")
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(run, "last"))
    pairs = synthetic_pairs(run_token_set(ws, run), tokenizer, args.pairs, prompt_tokens=args.block_size // 4,
                            answer_tokens=args.block_size // 2, seed=1)
    style = load_or_fit_workspace_model(ws)
    style = replace(style, settings=replace(style.settings, min_words=1))
    before = target_share(resolve_checkpoint(run, "last"), style, args.block_size)
    shutil.rmtree(ws.runs_dir / "picked", ignore_errors=True)
    started = time.process_time()
    result = train_dpo(ws, run="picked", source="plain", pairs=pairs,
                       overrides={"learning_rate": args.learning_rate, "beta": args.beta, "max_steps": args.dpo_steps,
                                  "save_every": args.dpo_steps, "batch_size": 8})
    trained = run.record["settings"]
    seconds = time.process_time() - started
    after = target_share(result.checkpoints[-1], style, args.block_size)
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    lines = [SECTION_START, "## Learning from picks: DPO on synthetic picks", "",
             f"`python benchmarks/dpo_synthetic.py` — the demo's two authors at equal weight, built-in `tiny` from "
             f"scratch without voices ({trained['max_steps']} steps of {trained['batch_size']} × {trained['block_size']} "
             f"tokens), then DPO: {args.pairs} pairs (context: {args.block_size // 4} tokens of {AUTHORS[0].name}; chosen: "
             f"her next {args.block_size // 2}; rejected: {args.block_size // 2} tokens of {AUTHORS[1].name}), "
             f"{record['pairs']['held_out']} held out, β {args.beta}, learning rate {record['dpo']['learning_rate']:g}, "
             f"{args.dpo_steps} steps of 8 pairs; {platform.processor() or platform.machine()}, "
             f"{seconds:.0f} s of CPU for the DPO run.", "",
             "| | before (the base run) | after DPO |", "|---|---:|---:|",
             f"| held-out preference accuracy (chosen more likely per token) | {result.accuracy_before:.0%} | "
             f"{result.accuracy_after:.0%} |",
             f"| held-out implicit-reward accuracy | — | {result.reward_accuracy_after:.0%} |",
             f"| samples read as {AUTHORS[0].name} ({len(PROMPTS) * 6}, {args.block_size - 8} tokens, nucleus) | "
             f"{before:.0%} | "
             f"{after:.0%} |", "", SECTION_END]
    publish("\n".join(lines), args.write, SECTION_START, SECTION_END)


if __name__ == "__main__":
    main()
