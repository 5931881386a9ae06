"""Training throughput: our Accelerate loop against the Hugging Face `Trainer`, same model, data and batch.

Both train the same freshly initialised built-in model (same seed) on blocks drawn from
the demo corpus's token files, with the same batch, learning rate, AdamW betas, weight
decay, clipping and precision. Throughput is steady-state tokens per second: the first
`--warmup` steps of each run are left out (allocation, first-call overheads,
torch.compile). Runs alternate (ours, Trainer, ours, Trainer, ...) and the fastest of
each counts; the ratio is ours / Trainer. On a CUDA GPU it also reports model FLOPs
utilisation: 6·N + 12·L·d·T FLOPs per token (N weights, L layers, width d, block T;
see `flops_per_token`) × tokens/s, over the GPU's dense bf16 peak.

    python benchmarks/training_speed.py                       # CPU: tiny model
    python benchmarks/training_speed.py --model small --batch-size 16 --block-size 1024 --steps 60
    python benchmarks/training_speed.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from sections import publish

from dvoinik import demo
from dvoinik.corpus.build import build_corpus
from dvoinik.tokens import prepare_tokens
from dvoinik.training.data import BlockSampler
from dvoinik.training.loop import train
from dvoinik.training.metrics import read_metrics
from dvoinik.training.models import load_base_tokenizer, new_model
from dvoinik.workspace import write_settings

SECTION_START = "<!-- training-speed:start -->"
SECTION_END = "<!-- training-speed:end -->"
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.0}


def flops_per_token(model: torch.nn.Module, block_size: int) -> float:
    """Training FLOPs per token: 6 per weight (forward + backward) plus attention scores (PaLM's estimate)."""
    config = model.config
    weights = sum(p.numel() for p in model.parameters())
    return 6 * weights + 12 * config.num_hidden_layers * config.hidden_size * block_size


def gpu_peak_tflops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def ours(ws, args, run: str) -> float:
    overrides = {"max_steps": args.steps, "save_every": 10**9, "eval_every": 10**9, "log_every": args.warmup,
                 "warmup_fraction": 0.0, "compile": args.compile}
    train(ws, run=run, overrides=overrides)
    # Each line covers log_every steps; the first covers the warmup steps and is left out.
    records = [r for r in read_metrics(ws.runs_dir / run) if r["kind"] == "train"][1:]
    return sum(r["tokens_per_second"] for r in records) / len(records) if records else 0.0


def hf_trainer(ws, args, tokenizer, token_set, output: Path) -> float:
    """Trainer's tokens/s; the process environment is put back after it (see below)."""
    saved = dict(os.environ)
    try:
        return _hf_trainer(ws, args, tokenizer, token_set, output)
    finally:
        # Trainer(torch_compile=True) exports ACCELERATE_DYNAMO_BACKEND, which would make the next
        # Accelerator in this process compile our model a second time.
        os.environ.clear()
        os.environ.update(saved)


def _hf_trainer(ws, args, tokenizer, token_set, output: Path) -> float:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    s = ws.train
    sampler = BlockSampler(token_set, s.block_size, s.batch_size, s.seed)
    # The same kind of blocks; Trainer's model shifts labels itself, so each row is block_size + 1 tokens.
    rows = [row for _ in range(args.steps) for row in torch.from_numpy(sampler.next_batch())]
    dataset = [{"input_ids": row, "labels": row} for row in rows]
    model = new_model(s.base, len(tokenizer), token_set.eos_id, s.block_size, s.seed)
    times: list[float] = []

    class StepTimes(TrainerCallback):
        def on_step_end(self, *_, **__) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    cuda = torch.cuda.is_available()
    arguments = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=s.batch_size, max_steps=args.steps,
        learning_rate=s.learning_rate, weight_decay=s.weight_decay, adam_beta1=s.beta1, adam_beta2=s.beta2,
        max_grad_norm=s.grad_clip, lr_scheduler_type="cosine", warmup_steps=0, logging_strategy="no",
        save_strategy="no", report_to=[], dataloader_num_workers=0, seed=s.seed, use_cpu=not cuda,
        bf16=cuda, optim="adamw_torch_fused" if cuda else "adamw_torch", torch_compile=args.compile,
        disable_tqdm=True,
    )
    Trainer(model=model, args=arguments, train_dataset=dataset, callbacks=[StepTimes()]).train()
    steady = times[args.warmup :]
    tokens = s.batch_size * s.block_size * (len(steady) - 1)
    return tokens / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ws = demo.create_demo_workspace(Path(tmp) / "bench")
        build_corpus(ws)
        ws = write_settings(ws, "train", {"base": args.model, "batch_size": args.batch_size,
                                          "block_size": args.block_size, "learning_rate": 1e-3})
        token_set, tokenizer = prepare_tokens(ws.corpus_dir, ws.tokens_dir, None, ws.train.vocab_size,
                                              load_base_tokenizer=load_base_tokenizer)
        results: dict[str, list[float]] = {"ours": [], "trainer": []}
        for i in range(args.repeat):
            results["ours"].append(ours(ws, args, f"ours-{i}"))
            results["trainer"].append(hf_trainer(ws, args, tokenizer, token_set, Path(tmp) / f"hf-{i}"))
            print(f"round {i + 1}: ours {results['ours'][-1]:,.0f} tokens/s, Trainer {results['trainer'][-1]:,.0f}")
        model = new_model(args.model, len(tokenizer), token_set.eos_id, args.block_size, 0)

    best = {name: max(values) for name, values in results.items()}
    median = {name: statistics.median(values) for name, values in results.items()}
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
        precision = "bf16 autocast"
    else:
        device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
        precision = "fp32"
    weights = sum(p.numel() for p in model.parameters())
    lines = [
        SECTION_START,
        "## Training throughput: our loop vs Hugging Face Trainer",
        "",
        f"`python benchmarks/training_speed.py --model {args.model} --batch-size {args.batch_size} "
        f"--block-size {args.block_size} --steps {args.steps}{' --compile' if args.compile else ''}` on {device}, "
        f"torch {torch.__version__}, {precision}: built-in `{args.model}` ({weights / 1e6:.1f}M weights with "
        f"embeddings), demo corpus, batch {args.batch_size} × {args.block_size} tokens; steady state after "
        f"{args.warmup} steps, {args.repeat} alternating rounds, the fastest counts.",
        "",
        "| loop | tokens/s | × Trainer |",
        "|---|---:|---:|",
        f"| Hugging Face Trainer | {best['trainer']:,.0f} | 1.00 |",
        f"| dvoinik (Accelerate) | {best['ours']:,.0f} | {best['ours'] / best['trainer']:.2f} |",
        "",
        "Every round (tokens/s): ours " + ", ".join(f"{v:,.0f}" for v in results["ours"]) + "; Trainer "
        + ", ".join(f"{v:,.0f}" for v in results["trainer"]) + f". Medians: ours {median['ours']:,.0f}, Trainer "
        f"{median['trainer']:,.0f}, ratio {median['ours'] / median['trainer']:.2f}.",
    ]
    if torch.cuda.is_available():
        peak = gpu_peak_tflops()
        flops = flops_per_token(model, args.block_size)
        if peak:
            lines += ["", f"Model FLOPs utilisation ({flops / 1e9:.2f} GFLOPs per token, peak {peak:.0f} TFLOP/s "
                      f"bf16): ours {flops * best['ours'] / 1e12 / peak:.1%}, Trainer "
                      f"{flops * best['trainer'] / 1e12 / peak:.1%}."]
    lines.append(SECTION_END)
    # One section per kind of machine (and compile), so a GPU run does not replace the CPU figures.
    marker = "training-speed" + ("-cuda" if torch.cuda.is_available() else "") + ("-compile" if args.compile else "")
    text = "\n".join(lines).replace("training-speed", marker)
    publish(text, args.write, SECTION_START.replace("training-speed", marker), SECTION_END.replace("training-speed", marker))


if __name__ == "__main__":
    main()
