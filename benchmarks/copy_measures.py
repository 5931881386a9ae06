"""The word index beside the token copy index, on the shared corpus: build time, query time, and the guard's choice.

    python benchmarks/copy_measures.py [--corpus ../shared/corpus] [--cache DIR] [--write docs/benchmarks.md]

On the workspace of `benchmarks/guard_overhead.py` (all 13 authors of `ru-classics`,
byte-level BPE 8,000; built under --cache if missing), in one run:

1. tokens per normalised word of the training texts (what `[check] min_words` is set from);
2. building both indexes over the training split: the token index (suffix array + LCP of
   the token ids the token stage wrote) and the word index (normalising every work, then
   the same suffix array over word ids); tokenizing the same texts for comparison;
3. query time of both: `check` on a 2,000-word text, and the copy score of one variant;
4. what real held-out text finds in each (so what a threshold or the guard's flag would
   catch in text nobody copied);
5. the guard's choice: a word-measure check of each finished variant (against writing
   the variant with built-in `tiny`, random init) and the per-step work a word-level ban
   would need (against the token guard's own lookup, whose cost against decoding
   `guard_overhead.py` measures).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from guard_overhead import timed, workspace
from sections import publish

from dvoinik.generation.copyindex import INDEX_DIR, open_copy_index
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double
from dvoinik.generation.variants import copy_score, generate
from dvoinik.generation.wordindex import WORD_INDEX_DIR, open_word_index
from dvoinik.generation.words import normalise_words
from dvoinik.tokens import encode_texts, iter_documents, prepare_tokens
from dvoinik.training.models import new_model

ROOT = Path(__file__).resolve().parents[1]
SECTION_START = "<!-- copy-measures:start -->"
SECTION_END = "<!-- copy-measures:end -->"
GUARD = 10


def best(function, repeats: int = 3) -> float:
    return min(timed(function, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/dvoinik-bench-classics"))
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--write", type=Path, default=None, help="replace the section in this markdown file")
    args = parser.parse_args()

    import torch

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    ws = workspace(args.corpus, args.cache)
    token_set, tokenizer = prepare_tokens(ws.corpus_dir, ws.tokens_dir, None, args.vocab)
    train_texts = [d.text for d in iter_documents(ws.corpus_dir) if d.split == "train"]
    held_out = [d.text for d in iter_documents(ws.corpus_dir) if d.split == "val"]

    # 1. Tokens per word, overall and per author.
    words_of = [len(normalise_words(t)) for t in train_texts]
    tokens_of = [d.tokens - 1 for d in token_set.documents if d.split == "train"]  # without the EOS
    per_author: dict[str, list[int]] = {}
    for doc, words, tokens in zip([d for d in token_set.documents if d.split == "train"], words_of, tokens_of):
        entry = per_author.setdefault(doc.author, [0, 0])
        entry[0] += tokens
        entry[1] += words
    ratio = sum(tokens_of) / sum(words_of)
    ratios = sorted(t / w for t, w in per_author.values())
    print(f"tokens per word: {ratio:.2f} (authors {ratios[0]:.2f}–{ratios[-1]:.2f})")

    # 2. Builds, each from nothing; the tokenizer's pass over the same texts for comparison.
    shutil.rmtree(token_set.folder / INDEX_DIR, ignore_errors=True)
    shutil.rmtree(ws.root / WORD_INDEX_DIR, ignore_errors=True)
    token_build = best(lambda: (shutil.rmtree(token_set.folder / INDEX_DIR, ignore_errors=True),
                                open_copy_index(token_set)), 1)
    tokenize = best(lambda: encode_texts(tokenizer, train_texts), 1)
    normalise = best(lambda: [normalise_words(t) for t in train_texts], 1)
    word_build = best(lambda: (shutil.rmtree(ws.root / WORD_INDEX_DIR, ignore_errors=True),
                               open_word_index(ws.root)), 1)
    index, words = open_copy_index(token_set), open_word_index(ws.root)
    open_words = best(lambda: open_word_index(ws.root))
    print(f"token index {token_build:.1f} s, word index {word_build:.1f} s (normalising {normalise:.1f} s)")

    # 3. Queries: a 2,000-word held-out text as `check` reads it; one 128-token variant's copy score.
    text = " ".join(" ".join(held_out).split()[:2000])
    check_tokens = best(lambda: index.matching_statistics(tokenizer(text, add_special_tokens=False).input_ids))
    check_words = best(lambda: words.match(text))
    pieces = []
    val = np.concatenate([np.asarray(token_set.open("val", a)) for a in token_set.authors if a.val_tokens])
    for start in np.linspace(0, len(val) - args.new_tokens - 1, num=200).astype(int):
        pieces.append(tokenizer.decode(val[start : start + args.new_tokens].tolist()))
    score_tokens = best(lambda: [copy_score(index, tokenizer, p) for p in pieces[:50]]) / 50
    score_both = best(lambda: [copy_score(index, tokenizer, p, words, GUARD) for p in pieces[:50]]) / 50
    print(f"check of 2,000 words: tokens {check_tokens * 1e3:.0f} ms, words {check_words * 1e3:.0f} ms")

    # 4. Real held-out text against the training texts: nobody copied it.
    scores = [copy_score(index, tokenizer, p, words, GUARD) for p in pieces]
    longest_tokens = [s.tokens for s in scores]
    longest_words = [s.words for s in scores]
    by_words = np.mean([s.words >= GUARD for s in scores])
    by_span_tokens = np.mean([s.words_tokens >= GUARD for s in scores])

    # 5. The guard: decoding speed of `tiny` (random init) with the token guard, per variant and per step.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = new_model(args.model, len(tokenizer), token_set.eos_id, 1024, seed=0)
    if device == "cuda":
        model = model.to(device=device, dtype=torch.bfloat16)
    model.eval()
    double = Double(model, tokenizer, args.model, index, 1024)
    prompt = tokenizer.decode(val[1000:1064].tolist())
    decoding = decoding_for("nucleus", max_new_tokens=args.new_tokens, seed=1)
    generate(double, prompt, decoding, n=1, guard=GUARD)  # warm-up
    generation = best(lambda: generate(double, prompt, decoding, n=1, guard=GUARD))
    step = generation / args.new_tokens
    post_check = score_both - score_tokens  # what the word measure adds to each finished variant
    # A word-level ban would, every step and for every row: decode the row's tail, normalise it, and look up
    # the words that follow its last words in the word index (here: 4 words, a 5-word ban ≈ 10 tokens).
    tails = [val[s : s + 24].tolist() for s in np.linspace(0, len(val) - 25, num=64).astype(int)]
    contexts = np.stack([words.ids(normalise_words(tokenizer.decode(t)).words)[-4:] for t in tails
                         if len(normalise_words(tokenizer.decode(t))) >= 4])
    per_row_text = best(lambda: [normalise_words(tokenizer.decode(t)) for t in tails]) / len(tails)
    lookup_1 = best(lambda: [words.sequence.successors(contexts[i : i + 1]) for i in range(len(contexts))]) / len(contexts)
    ban_step = per_row_text + lookup_1
    # The token guard's work per row per step, measured alike: the tokens after a 9-token context.
    token_contexts = np.stack([val[s : s + GUARD - 1] for s in np.linspace(0, len(val) - GUARD, num=64).astype(int)])
    token_contexts = token_contexts.astype(np.int64)
    guard_step = best(lambda: [index.successors(token_contexts[i : i + 1]) for i in range(len(token_contexts))]) \
        / len(token_contexts)
    print(f"step {step * 1e3:.2f} ms; post-check {post_check * 1e3:.2f} ms per variant; ban floor "
          f"{ban_step * 1e3:.2f} ms per row per step")

    if device == "cuda":
        where = f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16"
    else:
        where = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads), torch {torch.__version__}, fp32"
    lines = [
        SECTION_START,
        f"## Copy measures: the word index beside the token index ({device.upper()})",
        "",
        f"`python benchmarks/copy_measures.py` on {where}; {time.perf_counter() - started:.0f} s in all, "
        f"{os.cpu_count()} cores, load average {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
        "(other work shared the machine: absolute times are inflated, the two indexes were measured side by side "
        "in the same run). The workspace "
        f"of `guard_overhead.py`: {len(token_set.authors)} authors of `ru-classics`, {len(train_texts)} training works, "
        f"byte-level BPE {args.vocab:,}; {index.size:,} tokens and {words.size:,} words indexed "
        f"({len(words.vocabulary):,} distinct normalised words).",
        "",
        f"- **Tokens per word:** {ratio:.2f} tokens of the BPE per normalised word of the training texts "
        f"({ratios[0]:.2f}–{ratios[-1]:.2f} by author; punctuation is tokens, not words), so `[check] min_words = 27` "
        f"≈ the 50 tokens `check` used before.",
        "",
        "| | token index | word index |",
        "|---|---:|---:|",
        f"| getting the training texts into ids (tokenizing / normalising, not in the build) | {tokenize:.1f} s "
        f"| {normalise:.1f} s |",
        f"| build from nothing (suffix array + LCP; the word index normalises too) | **{token_build:.1f} s** "
        f"| **{word_build:.1f} s** |",
        f"| opening a built index (the word index reads its vocabulary) | — | {open_words * 1e3:.0f} ms |",
        f"| `check` of a 2,000-word text (ids + matching statistics) | {check_tokens * 1e3:.0f} ms "
        f"| {check_words * 1e3:.0f} ms |",
        f"| a copy score ({args.new_tokens}-token variant) | {score_tokens * 1e3:.1f} ms "
        f"| +{post_check * 1e3:.1f} ms |",
        f"| longest span in real held-out text, {len(pieces)} pieces of {args.new_tokens} tokens (median / p90 / max) "
        f"| {statistics.median(longest_tokens):.0f} / {np.percentile(longest_tokens, 90):.0f} / {max(longest_tokens)} "
        f"tokens | {statistics.median(longest_words):.0f} / {np.percentile(longest_words, 90):.0f} / "
        f"{max(longest_words)} words |",
        "",
        f"- Real held-out text, which nobody copied: {by_words:.0%} of the pieces hold a run of {GUARD}+ words of "
        f"the training texts (what flags a copy the guard at {GUARD} could not see); {by_span_tokens:.0%} hold a "
        f"run whose characters take {GUARD}+ tokens.",
        f"- **The guard's choice.** Checking each finished variant with the word measure adds "
        f"{post_check * 1e3:.1f} ms per variant, {post_check / generation:.2%} of writing it with `{args.model}` "
        f"here ({args.new_tokens} tokens, nucleus, guard {GUARD}, {step * 1e3:.1f} ms per step). Banning the token "
        f"that would complete a normalised copy needs, per row and step, at least {ban_step * 1e3:.2f} ms (decoding "
        f"and normalising the row's tail {per_row_text * 1e3:.2f} ms, one word-index lookup {lookup_1 * 1e3:.2f} ms): "
        f"{ban_step / guard_step:.1f}× the token guard's own lookup measured alike ({guard_step * 1e3:.2f} ms), "
        "which already costs 3–11% of decoding (the sections above).",
        SECTION_END,
    ]
    marker = f"copy-measures-{device}"
    text = "\n".join(lines).replace("copy-measures", marker)
    publish(text, args.write, SECTION_START.replace("copy-measures", marker), SECTION_END.replace("copy-measures", marker))


if __name__ == "__main__":
    main()
