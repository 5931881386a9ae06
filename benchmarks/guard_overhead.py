"""The copy index and the originality guard on the shared corpus: build time, lookup cost, generation overhead.

    python benchmarks/guard_overhead.py [--corpus ../shared/corpus] [--model tiny] [--write docs/benchmarks.md]

Builds (or reuses, under --cache) a workspace of all 13 authors of `ru-classics` with a
byte-level BPE, then measures in one run:

1. the copy index build (suffix array + LCP with pydivsufsort) over every training token;
2. one guard lookup — the tokens that follow a 9-token context — for contexts cut from
   held-out text, alone and in batches;
3. generation with the guard off (the baseline) and at N = 10, same model, prompts,
   seeds and settings, for 1 and 8 variants: tokens per second and the ratio.

The model is a randomly initialised built-in configuration: speed does not depend on
what the weights learned. On a CUDA machine the model runs on the GPU (bf16).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from sections import publish

from dvoinik.corpus.build import build_corpus
from dvoinik.generation.copyindex import INDEX_DIR, index_fingerprint, open_copy_index
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double
from dvoinik.generation.variants import generate
from dvoinik.tokens import prepare_tokens
from dvoinik.training.models import new_model
from dvoinik.workspace import add_sources, init_workspace, load_workspace, write_settings

ROOT = Path(__file__).resolve().parents[1]
SECTION_START = "<!-- guard-overhead:start -->"
SECTION_END = "<!-- guard-overhead:end -->"
GUARD = 10


def workspace(corpus: Path, cache: Path):
    if (cache / "dvoinik.toml").is_file() and (cache / "corpus" / "documents.jsonl").is_file():
        return load_workspace(cache)
    shutil.rmtree(cache, ignore_errors=True)
    classics = corpus / "ru-classics"
    ws = init_workspace(cache, name="ru-classics")
    ws, _ = add_sources(ws, [classics / "chekhov"], author="chekhov", role="target")
    for author in sorted(p.name for p in classics.iterdir() if p.is_dir() and p.name != "chekhov"):
        ws, _ = add_sources(ws, [classics / author], author=author, role="influence")
    ws = write_settings(ws, "corpus", {"workers": 0})
    build_corpus(ws)
    return ws


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dvoinik-bench-classics"))
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, default=None, help="replace the section in this markdown file")
    args = parser.parse_args()

    import torch

    ws = workspace(args.corpus, args.cache)
    token_set, tokenizer = prepare_tokens(ws.corpus_dir, ws.tokens_dir, None, args.vocab)
    shutil.rmtree(token_set.folder / INDEX_DIR, ignore_errors=True)
    started = time.perf_counter()
    index = open_copy_index(token_set)
    build_seconds = time.perf_counter() - started
    assert index.fingerprint == index_fingerprint(token_set)
    print(f"index: {index.size:,} tokens in {build_seconds:.1f} s")

    # Contexts from held-out text: what the guard sees while a model writes in the author's manner.
    held_out = np.concatenate([np.asarray(token_set.open("val", a)) for a in token_set.authors if a.val_tokens])
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(held_out) - GUARD, size=2048)
    contexts = np.stack([held_out[s : s + GUARD - 1] for s in starts]).astype(np.int64)
    lookups = {}
    for batch in (1, 8, 64):
        chunks = [contexts[i : i + batch] for i in range(0, 512, batch)]
        seconds = min(timed(lambda chunks=chunks: [index.successors(c) for c in chunks], 3))
        lookups[batch] = seconds / (len(chunks) * batch) * 1e6
        print(f"lookup, batch {batch}: {lookups[batch]:.1f} µs per context")
    found = np.mean([len(s) > 0 for s in index.successors(contexts[:512])])

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = new_model(args.model, len(tokenizer), token_set.eos_id, 1024, seed=0)
    if device == "cuda":
        model = model.to(device=device, dtype=torch.bfloat16)
    model.eval()
    double = Double(model, tokenizer, args.model, index, 1024)
    prompt = tokenizer.decode(held_out[1000:1064].tolist())
    rows = []
    for variants in (1, 8):
        rates: dict[int, list[float]] = {0: [], GUARD: []}
        for _ in range(args.rounds):
            for guard in (0, GUARD):  # alternating, so drift hits both alike
                decoding = decoding_for("nucleus", max_new_tokens=args.new_tokens, seed=1)
                started = time.perf_counter()
                generate(double, prompt, decoding, n=variants, guard=guard)
                seconds = time.perf_counter() - started
                rates[guard].append(variants * args.new_tokens / seconds)
        best = {g: max(r) for g, r in rates.items()}
        per_token_ms = (1 / best[GUARD] - 1 / best[0]) * 1e3 * variants
        rows.append((variants, best[0], best[GUARD], best[GUARD] / best[0], per_token_ms,
                     statistics.median(rates[GUARD]) / statistics.median(rates[0])))
        print(f"{variants} variant(s): off {best[0]:,.0f} tok/s, guard {best[GUARD]:,.0f} tok/s")

    if device == "cuda":
        where = f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16"
    else:
        where = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}, fp32"
    params = sum(p.numel() for p in model.parameters()) / 1e6
    lines = [
        SECTION_START,
        f"## Copy index and originality guard ({device.upper()})",
        "",
        f"`python benchmarks/guard_overhead.py --model {args.model}` on {where}: a workspace of "
        f"{len(token_set.authors)} authors of `ru-classics` ({', '.join(a.name for a in token_set.authors)}), "
        f"byte-level BPE {args.vocab:,}, {index.size:,} training tokens indexed.",
        "",
        f"- Index build (suffix array + LCP, pydivsufsort, one core): **{build_seconds:.1f} s** "
        f"({index.size / build_seconds / 1e6:.1f} M tokens/s).",
        f"- One guard lookup (the tokens that follow a {GUARD - 1}-token context from held-out text; "
        f"{found:.0%} of such contexts occur in the training texts): "
        + ", ".join(f"{lookups[b]:.0f} µs per context in batches of {b}" for b in lookups) + ".",
        "",
        f"Generation with built-in `{args.model}` ({params:.1f}M weights, random init), nucleus sampling, "
        f"{args.new_tokens} new tokens, best of {args.rounds} alternating rounds; baseline = guard off in the same run:",
        "",
        f"| variants | guard off, tokens/s | guard {GUARD}, tokens/s | × baseline | added per decoding step (ms) | × baseline, medians |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for variants, off, on, ratio, added, median_ratio in rows:
        lines.append(f"| {variants} | {off:,.0f} | {on:,.0f} | {ratio:.2f} | {added:.2f} | {median_ratio:.2f} |")
    lines.append(SECTION_END)
    # One section per kind of machine, so a GPU run does not replace the CPU figures.
    marker = f"guard-overhead-{device}"
    text = "\n".join(lines).replace("guard-overhead", marker)
    publish(text, args.write, SECTION_START.replace("guard-overhead", marker), SECTION_END.replace("guard-overhead", marker))


if __name__ == "__main__":
    main()
