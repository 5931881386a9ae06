"""Scale on one GPU, in an 8-minute slot: real shapes, randomly initialised (speed does not depend on what was learned).

1. **Full fine-tune of a 760M GPT-2 (ruGPT-3 large's shape)**, block 1024, bf16, torch.compile: our
   loop (`dvoinik.training.loop.train` on a local base folder) against Hugging Face's `Trainer`
   (compiled), same model, batch, optimizer settings and blocks, in the same run; tokens/s after
   the compiling steps, model FLOPs utilisation with attention counted (6·N + 12·L·d·T per token),
   peak memory beside `dvoinik train --plan`'s figure.
2. **LoRA on an 8B Llama-shaped base** (Llama-3-8B's shape) in bf16, through our loop: tokens/s, peak
   memory (and the plan's), MFU (4·N + 12·L·d·T per token: the frozen weights need no gradient).
3. **Generation of a ~1B Llama-shaped model** (Llama-3.2-1B's shape): `model.generate` (dynamic cache)
   and the static-cache path of generation/fast.py (compiled step), one stream and 8 variants,
   guard off and on (N = 10, over a copy index of the demo corpus); nucleus sampling, every row
   held to the full length.

Each part writes its section of docs/benchmarks.md as soon as it is measured, so a slot that
runs out keeps what was done.

    python benchmarks/scale.py --write docs/benchmarks.md      # a CUDA GPU (H100/H200 class): about 7 minutes
    python benchmarks/scale.py --smoke                          # the same code at toy sizes on a CPU, seconds
    python benchmarks/scale.py --parts generate --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sections import publish
from training_speed import PEAK_BF16_TFLOPS

from dvoinik import demo
from dvoinik.corpus.build import build_corpus, load_documents
from dvoinik.generation.copyindex import SourceWork, write_copy_index
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double
from dvoinik.generation.variants import sample_ids
from dvoinik.tokens import train_bpe_tokenizer
from dvoinik.training.data import BlockSampler
from dvoinik.training.loop import train
from dvoinik.training.metrics import read_metrics
from dvoinik.training.plan import Hardware, plan_run
from dvoinik.workspace import Workspace, write_settings

SECTION = "scale"
GIB = 1024**3


@dataclass(frozen=True)
class Sizes:
    """The shapes and lengths of one mode: the real ones on a GPU, toy ones for --smoke."""

    gpt2: dict
    llama_8b: dict
    llama_1b: dict
    block: int
    train_batch: int
    lora_batch: int
    train_steps: int
    lora_steps: int
    warmup: int  # steps (or generations) left out: compilation, allocation
    new_tokens: int
    prompt_tokens: int


GPU = Sizes(
    gpt2=dict(vocab_size=50264, n_embd=1536, n_layer=24, n_head=16, n_positions=2048),  # ruGPT-3 large: 760M
    llama_8b=dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                  tie_word_embeddings=False),
    llama_1b=dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, rope_theta=500000.0,
                  tie_word_embeddings=True),
    block=1024, train_batch=16, lora_batch=8, train_steps=24, lora_steps=12, warmup=6, new_tokens=256,
    prompt_tokens=64,
)
SMOKE = Sizes(
    gpt2=dict(vocab_size=600, n_embd=64, n_layer=2, n_head=2, n_positions=256),
    llama_8b=dict(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False),
    llama_1b=dict(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True),
    block=64, train_batch=4, lora_batch=4, train_steps=6, lora_steps=4, warmup=2, new_tokens=24, prompt_tokens=16,
)


def cuda() -> bool:
    return torch.cuda.is_available()


def device_name() -> str:
    if cuda():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def peak_tflops() -> float | None:
    if not cuda():
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def mfu(flops_per_token: float, tokens_per_second: float) -> str:
    peak = peak_tflops()
    return f"{flops_per_token * tokens_per_second / 1e12 / peak:.1%}" if peak else "—"


def attention_flops(layers: int, width: int, block: int) -> float:
    """Forward and backward of the attention scores and their weighted sum, per token (PaLM's 12·L·d·T)."""
    return 12 * layers * width * block


def free_memory() -> None:
    gc.collect()
    if cuda():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> int | None:
    return torch.cuda.max_memory_allocated() if cuda() else None


def count(weights: int) -> str:
    return f"{weights / 1e9:.2f}B" if weights >= 1e9 else f"{weights / 1e6:,.1f}M"


def gib(value: int | None) -> str:
    return f"{value / GIB:.1f} GiB" if value is not None else "—"


# ---------------------------------------------------------------- material


def demo_workspace(root: Path, sizes: Sizes) -> tuple[Workspace, Any]:
    """The demo's corpus, and a byte-level BPE of it whose ids fit every model's vocabulary."""
    ws = demo.create_demo_workspace(root / "ws")
    build_corpus(ws)
    texts = [d.text for d in load_documents(ws.corpus_dir)]
    tokenizer = train_bpe_tokenizer(lambda: iter(texts), min(4000, sizes.gpt2["vocab_size"]))
    return ws, tokenizer


def base_folder(folder: Path, config: Any, tokenizer: Any) -> Path:
    """A randomly initialised model of `config`, saved in bf16 with the tokenizer: what `--base` reads."""
    from transformers import AutoModelForCausalLM

    started = time.perf_counter()
    config.eos_token_id = config.bos_token_id = tokenizer.eos_token_id
    with torch.device("cuda" if cuda() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="5GB")
    tokenizer.save_pretrained(folder)
    del model
    free_memory()
    print(f"  wrote {folder.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def our_tokens_per_second(ws: Workspace, run: str) -> float:
    """Steady state from metrics.jsonl: the first logging window (the compiling steps) left out."""
    records = [r for r in read_metrics(ws.runs_dir / run) if r["kind"] == "train"][1:]
    return sum(r["tokens_per_second"] for r in records) / len(records) if records else 0.0


def run_ours(ws: Workspace, run: str, settings: dict, sizes: Sizes, steps: int) -> tuple[float, int | None]:
    free_memory()
    overrides = {**settings, "max_steps": steps, "log_every": sizes.warmup, "eval_every": 10**9, "save_every": 10**9,
                 "eval_blocks": 1, "warmup_fraction": 0.0}
    train(ws, run=run, overrides=overrides)
    return our_tokens_per_second(ws, run), peak_memory()


def run_trainer(ws: Workspace, folder: Path, tokenizer: Any, sizes: Sizes, compile_model: bool) -> float:
    """Trainer's steady tokens/s on the same model, batch, blocks and optimizer settings."""
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from dvoinik.tokens import prepare_tokens

    free_memory()
    saved = dict(os.environ)  # Trainer(torch_compile=True) leaves ACCELERATE_DYNAMO_BACKEND behind
    try:
        token_set, _ = prepare_tokens(ws.corpus_dir, ws.tokens_dir, str(folder), 0, load_base_tokenizer=lambda b: tokenizer)
        s = ws.train
        sampler = BlockSampler(token_set, sizes.block, sizes.train_batch, s.seed)
        rows = [row for _ in range(sizes.train_steps) for row in torch.from_numpy(sampler.next_batch().astype(np.int64))]
        dataset = [{"input_ids": row, "labels": row} for row in rows]
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
        times: list[float] = []

        class StepTimes(TrainerCallback):
            def on_step_end(self, *_: Any, **__: Any) -> None:
                if cuda():
                    torch.cuda.synchronize()
                times.append(time.perf_counter())

        arguments = TrainingArguments(
            output_dir=str(ws.root / "trainer"), per_device_train_batch_size=sizes.train_batch,
            max_steps=sizes.train_steps, learning_rate=5e-5, weight_decay=s.weight_decay, adam_beta1=s.beta1,
            adam_beta2=s.beta2, max_grad_norm=s.grad_clip, lr_scheduler_type="cosine", warmup_steps=0,
            logging_strategy="no", save_strategy="no", report_to=[], dataloader_num_workers=0, seed=s.seed,
            use_cpu=not cuda(), bf16=cuda(), optim="adamw_torch_fused" if cuda() else "adamw_torch",
            torch_compile=compile_model, disable_tqdm=True,
        )
        Trainer(model=model, args=arguments, train_dataset=dataset, callbacks=[StepTimes()]).train()
        steady = times[sizes.warmup:]
        return sizes.train_batch * sizes.block * (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    finally:
        os.environ.clear()
        os.environ.update(saved)


def planned(folder: Path, settings: dict) -> int | None:
    """What `dvoinik train --plan` says the run allocates (its figure without the overhead allowance)."""
    from dvoinik.workspace import TrainSettings

    if not cuda():
        return None
    hardware = Hardware(1, torch.cuda.get_device_properties(0).total_memory, torch.cuda.get_device_name())
    return plan_run(TrainSettings(**{**settings, "base": str(folder)}), hardware).plan.counted


# ---------------------------------------------------------------- 1. full fine-tune: ours against Trainer


def full_fine_tune(root: Path, ws: Workspace, tokenizer: Any, sizes: Sizes, args: argparse.Namespace) -> list[str]:
    from transformers import GPT2Config

    config = GPT2Config(**sizes.gpt2)
    folder = base_folder(root / "gpt2-760m", config, tokenizer)
    settings = {"base": str(folder), "method": "full", "block_size": sizes.block, "batch_size": sizes.train_batch,
                "compile": args.compile, "learning_rate": 5e-5}
    ours, ours_peak = run_ours(ws, "gpt2-full", settings, sizes, sizes.train_steps)
    print(f"  ours {ours:,.0f} tokens/s", flush=True)
    trainer = run_trainer(ws, folder, tokenizer, sizes, args.compile)
    print(f"  Trainer {trainer:,.0f} tokens/s", flush=True)
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        weights = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    flops = 6 * weights + attention_flops(config.n_layer, config.n_embd, sizes.block)
    plan = planned(folder, settings)
    return [
        f"**Full fine-tune, GPT-2 of ruGPT-3 large's shape** ({count(weights)} weights), block {sizes.block}, "
        f"batch {sizes.train_batch}, {'bf16 autocast' if cuda() else 'fp32'}, "
        f"{'torch.compile' if args.compile else 'eager'}; {flops / 1e9:.2f} GFLOPs per token "
        f"(6·N + 12·L·d·T); steady state after {sizes.warmup} steps of {sizes.train_steps}.",
        "",
        "| loop | tokens/s | × Trainer | MFU | peak memory (plan) |",
        "|---|---:|---:|---:|---:|",
        f"| Hugging Face Trainer | {trainer:,.0f} | 1.00 | {mfu(flops, trainer)} | — |",
        f"| dvoinik | {ours:,.0f} | {ours / trainer if trainer else float('nan'):.2f} | {mfu(flops, ours)} | "
        f"{gib(ours_peak)} ({gib(plan)}) |",
    ]


# ---------------------------------------------------------------- 2. LoRA on an 8B base


def lora_8b(root: Path, ws: Workspace, tokenizer: Any, sizes: Sizes, args: argparse.Namespace) -> list[str]:
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**sizes.llama_8b)
    folder = base_folder(root / "llama-8b", config, tokenizer)
    settings = {"base": str(folder), "method": "lora", "block_size": sizes.block, "batch_size": sizes.lora_batch,
                "compile": False, "lora_rank": 16}
    speed, peak = run_ours(ws, "llama-8b-lora", settings, sizes, sizes.lora_steps)
    print(f"  LoRA {speed:,.0f} tokens/s, peak {gib(peak)}", flush=True)
    with torch.device("meta"):
        weights = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    flops = 4 * weights + attention_flops(config.num_hidden_layers, config.hidden_size, sizes.block)
    return [
        f"**LoRA r16 (q_proj, v_proj), Llama-3-8B's shape** ({count(weights)} weights, the base in bf16), "
        f"block {sizes.block}, batch {sizes.lora_batch}, eager; {flops / 1e9:.1f} GFLOPs per token "
        "(4·N + 12·L·d·T: no weight gradients for the frozen base).",
        "",
        "| tokens/s | MFU | peak memory | `train --plan` |",
        "|---:|---:|---:|---:|",
        f"| {speed:,.0f} | {mfu(flops, speed)} | {gib(peak)} | {gib(planned(folder, settings))} |",
    ]


# ---------------------------------------------------------------- 3. generation of a ~1B model


def generation(root: Path, ws: Workspace, tokenizer: Any, sizes: Sizes, args: argparse.Namespace) -> list[str]:
    from transformers import AutoModelForCausalLM, LlamaConfig

    free_memory()
    config = LlamaConfig(**sizes.llama_1b, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with torch.device("cuda" if cuda() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda() else torch.float32).eval()
    weights = sum(p.numel() for p in model.parameters())
    texts = [d.text for d in load_documents(ws.corpus_dir)]
    stream = np.asarray([t for text in texts for t in tokenizer(text, add_special_tokens=False).input_ids + [0]],
                        dtype=np.uint32)
    index = write_copy_index(stream, [SourceWork("demo", "demo", "demo", 0, len(stream))], root / "copy-index", "scale")
    double = Double(model, tokenizer, "llama-1b", index, config.max_position_embeddings)
    prompt = torch.from_numpy(stream[: sizes.prompt_tokens].astype(np.int64))[None]
    decoding = decoding_for("nucleus", max_new_tokens=sizes.new_tokens, seed=0)

    def rate(n: int, guard: int, fast: bool) -> float:
        kwargs = dict(n=n, fast=fast, min_new_tokens=sizes.new_tokens)  # every row held to the full length
        # A warm-up: the fast path compiles its step for this batch and cache length (so at full length).
        warm = decoding if fast else decoding_for("nucleus", max_new_tokens=16, seed=0)
        sample_ids(double, prompt, warm, guard, **{**kwargs, "min_new_tokens": warm.max_new_tokens})
        if cuda():
            torch.cuda.synchronize()
        started = time.perf_counter()
        rows = sample_ids(double, prompt, decoding, guard, **kwargs)
        if cuda():
            torch.cuda.synchronize()
        return sum(len(r) for r in rows) / (time.perf_counter() - started)

    measured: dict[tuple[str, int, int], float] = {}
    for n in (1, 8):
        for fast in (False, True):
            for guard in (0, 10):
                measured[("fast" if fast else "generate", n, guard)] = rate(n, guard, fast)
                print(f"  {'fast' if fast else 'generate'} n={n} guard={guard}: "
                      f"{measured[('fast' if fast else 'generate', n, guard)]:,.0f} tokens/s", flush=True)
    lines = [
        f"**Generation, Llama-3.2-1B's shape** ({count(weights)} weights, {'bf16' if cuda() else 'fp32'}), a "
        f"{sizes.prompt_tokens}-token prompt, {sizes.new_tokens} new tokens per variant, nucleus sampling (top_p 0.9); "
        "tokens/s over all variants, after one warm-up generation (which compiles the fast path).",
        "",
        "| path | variants | guard off | guard N=10 | slower with the guard |",
        "|---|---:|---:|---:|---:|",
    ]
    for path, label in (("generate", "`model.generate`, dynamic cache"), ("fast", "static cache, compiled step")):
        for n in (1, 8):
            off, on = measured[(path, n, 0)], measured[(path, n, 10)]
            lines.append(f"| {label} | {n} | {off:,.0f} | {on:,.0f} | {off / on - 1:+.1%} |")
    speedup = measured[("fast", 1, 0)] / measured[("generate", 1, 0)]
    lines += ["", f"Static cache and compiled step: {speedup:.1f}× `generate` for one stream, "
              f"{measured[('fast', 8, 0)] / measured[('generate', 8, 0)]:.1f}× for 8 variants."]
    return lines


PARTS = {"train": full_fine_tune, "lora": lora_8b, "generate": generation}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes, no compilation: the code path in seconds")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="eager training (part 1)")
    parser.add_argument("--write", type=Path, default=None, help="put the sections into this markdown file")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else GPU
    if args.smoke:
        args.compile = False
    elif not cuda():
        parser.error("the full sizes need a CUDA GPU; use --smoke on a CPU")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part {unknown[0]!r} (parts: {', '.join(PARTS)})")

    started = time.perf_counter()
    header = (f"`python benchmarks/scale.py{' --smoke' if args.smoke else ''}` on {device_name()}, torch "
              f"{torch.__version__}; randomly initialised models of real shapes, the demo corpus.")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws, tokenizer = demo_workspace(root, sizes)
        ws = write_settings(ws, "train", {"precision": "auto"})
        for name in parts:
            part_started = time.perf_counter()
            print(f"{name}:", flush=True)
            lines = PARTS[name](root, ws, tokenizer, sizes, args)
            took = time.perf_counter() - part_started
            marker = f"{SECTION}-{name}" + ("-smoke" if args.smoke else "")
            text = "\n".join([f"<!-- {marker}:start -->", f"### Scale: {name}", "", header + f" This part: {took:.0f} s.",
                              "", *lines, f"<!-- {marker}:end -->"])
            publish(text, args.write, f"<!-- {marker}:start -->", f"<!-- {marker}:end -->")
    print(f"all parts in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
