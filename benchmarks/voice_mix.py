"""Mixed voices, two ways: interpolated marker embeddings vs weighted logits of the conditioned passes.

    python benchmarks/voice_mix.py --demo /tmp/voice-mix [--steps 300] [--write docs/benchmarks.md] [--label NAME]
    python benchmarks/voice_mix.py --demo /tmp/voice-mix-40 --steps 40 --block-size 64 --batch-size 8 --new-tokens 48
    python benchmarks/voice_mix.py --workspace W --run R [--authors A,B]

A run trained with `[train] voices = true` has one marker per author. A mix of two voices
A and B with weights (w, 1 − w) can be made in two ways:

- **embedding**: one pass, whose first position holds w·e(A) + (1 − w)·e(B), the
  weighted mean of the two markers' embeddings (written here, in this script);
- **logits** (what `dvoinik generate --voice A=w,B=1-w` does, `generation/voices.py`): one
  pass per voice, each with its own marker, and at every step the next token drawn from
  the weighted sum of their logits, w·z(·|A) + (1 − w)·z(·|B) — a product of the two
  distributions — after which the decoding preset's filters apply as usual; every pass
  then takes the drawn token.

For w in 0, ¼, ½, ¾, 1 both write the same number of samples from the same prompts (short
openings from both authors' held-out works), and the workspace's stylometry model names
the author each sample reads like. A good mix follows its weight: the share read as A
should climb steadily from B's level at w = 0 to A's at w = 1. Measured: the mean
distance of that share from the straight line between the two ends, whether it climbs
at every step, and the CPU time per sample.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
from sections import publish

from dvoinik.corpus.build import build_corpus
from dvoinik.evaluation.evaluate import word_starts
from dvoinik.evaluation.stylometry import load_or_fit_workspace_model
from dvoinik.evaluation.voices import attribution_shares, samples_in_voice, voice_passages
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double, load_checkpoint
from dvoinik.generation.variants import sample_ids
from dvoinik.generation.voices import resolve_voice_name
from dvoinik.runs import find_run, resolve_checkpoint, run_token_set
from dvoinik.training.loop import train
from dvoinik.workspace import load_workspace, write_settings

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEMO_RUN = "voices"


def demo_workspace(folder: Path, steps: int, block_size: int, batch_size: int):
    """The demo's two authors with equal weights, and a `tiny` voices run on them."""
    from dvoinik.demo import AUTHORS, create_demo_workspace

    if not (folder / "runs" / DEMO_RUN / "run.json").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        ws = create_demo_workspace(folder)
        text = ws.config_path.read_text(encoding="utf-8").replace("weight = 10.0", "weight = 1.0")
        ws.config_path.write_text(text, encoding="utf-8")  # every voice gets as many blocks as the other
        ws = load_workspace(folder)
        ws = write_settings(ws, "train", {"voices": True, "max_steps": steps, "save_every": steps,
                                          "time_budget_minutes": 0.0, "block_size": block_size,
                                          "batch_size": batch_size})
        build_corpus(ws)
        train(ws, run=DEMO_RUN)
        assert [a.name for a in AUTHORS]  # the target comes first among the voices
    return load_workspace(folder), DEMO_RUN


def embedding_mix_samples(double: Double, prompts: list[list[int]], voice: dict[str, float], preset: str,
                          new_tokens: int, seed: int, batch_size: int = 16) -> list[str]:
    """Samples from one pass whose marker position holds the weighted mean of the voices' marker embeddings."""
    layer = double.model.get_input_embeddings()
    ids = [double.voices[name] for name in voice]
    with torch.no_grad():
        rows = layer(torch.tensor([ids]))[0]
        vector = (rows * torch.tensor([voice[name] for name in voice]).unsqueeze(1)).sum(dim=0)
    placeholder = ids[0]

    def replace_marker(module, inputs, output):  # only the prefill sees a marker
        where = inputs[0].eq(placeholder)
        if not bool(where.any()):
            return output
        output = output.clone()
        output[where] = vector.to(output.dtype)
        return output

    handle = layer.register_forward_hook(replace_marker)
    texts = []
    try:
        for first in range(0, len(prompts), batch_size):
            batch = torch.tensor([[placeholder, *p] for p in prompts[first : first + batch_size]])
            decoding = decoding_for(preset, max_new_tokens=new_tokens, seed=seed + first)
            texts += [double.tokenizer.decode(row, skip_special_tokens=True) for row in sample_ids(double, batch, decoding)]
    finally:
        handle.remove()
    return texts


def measure(double: Double, style, prompts: list[list[int]], a: str, b: str, preset: str, new_tokens: int,
            seeds: list[int]) -> dict:
    rows = {"embedding": [], "logits": []}
    seconds = {"embedding": 0.0, "logits": 0.0}
    for weight in WEIGHTS:
        voice = {a: weight, b: 1 - weight}
        voice = {name: value for name, value in voice.items() if value > 0}
        for method, write in (("embedding", embedding_mix_samples), ("logits", samples_in_voice)):
            if len(voice) == 1:  # a single voice: its own marker, the same for both
                write = samples_in_voice
            started = time.process_time()
            texts = [text for seed in seeds for text in write(double, prompts, voice, preset, new_tokens, seed)]
            seconds[method] += time.process_time() - started
            rows[method].append(attribution_shares(style, texts).get(a, 0.0))
    summary = {}
    for method, shares in rows.items():
        line = [shares[0] + (shares[-1] - shares[0]) * w for w in WEIGHTS]
        summary[method] = {
            "shares": shares,
            "gap": sum(abs(s - x) for s, x in zip(shares, line)) / len(WEIGHTS),
            "monotone": all(later >= earlier for earlier, later in zip(shares, shares[1:])),
            "cpu_per_sample": seconds[method] / (len(WEIGHTS) * len(prompts) * len(seeds)),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, help="build the demo workspace (equal weights) and a voices run here")
    parser.add_argument("--steps", type=int, default=300, help="training steps of the demo's voices run")
    parser.add_argument("--block-size", type=int, default=128, help="the demo's voices run: tokens per block")
    parser.add_argument("--batch-size", type=int, default=16, help="the demo's voices run: blocks per step")
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--run")
    parser.add_argument("--authors", help="the two voices to mix, A,B (default: the first two)")
    parser.add_argument("--per-author", type=int, default=12, help="prompts from each author's held-out works")
    parser.add_argument("--prompt-tokens", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--preset", default="nucleus")
    parser.add_argument("--seeds", type=int, default=2, help="samples per prompt and weight (one per seed)")
    parser.add_argument("--write", type=Path, help="put the section into this markdown file")
    parser.add_argument("--label", default="", help="a name for the section (one section per model measured)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # CPU time per sample, not a race for shared cores

    if args.demo:
        ws, run_name = demo_workspace(args.demo, args.steps, args.block_size, args.batch_size)
    else:
        ws, run_name = load_workspace(args.workspace), args.run
    run = find_run(ws, run_name)
    token_set = run_token_set(ws, run)
    double = load_checkpoint(resolve_checkpoint(run, "last"), None, trained_length=run.trained_length)
    names = [resolve_voice_name(n, double.voices) for n in args.authors.split(",")] if args.authors \
        else list(double.voices)[:2]
    a, b = names
    style = load_or_fit_workspace_model(ws)
    style = replace(style, settings=replace(style.settings, min_words=1))
    found = [p for p in voice_passages(token_set, args.per_author, args.prompt_tokens, args.new_tokens,
                                       word_starts(double.tokenizer)) if p.author in (a, b)]
    prompts = [p.prompt for p in found]
    seeds = [1000 * i for i in range(args.seeds)]
    summary = measure(double, style, prompts, a, b, args.preset, args.new_tokens, seeds)

    trained = run.record["settings"]
    start, end = (f"<!-- voice-mix{'-' + args.label if args.label else ''}:{edge} -->" for edge in ("start", "end"))
    lines = [start, f"## Mixed voices: interpolated marker embeddings vs weighted logits"
                    f"{f' ({args.label})' if args.label else ''}", "",
             f"`python benchmarks/voice_mix.py` — run `{run.name}` of `{ws.name}` ({trained['base']}, "
             f"{trained['max_steps']} steps of {trained['batch_size']} × {trained['block_size']} tokens, both authors "
             f"at weight 1), {len(prompts)} prompts of {args.prompt_tokens} tokens "
             f"from both authors' held-out works × {len(seeds)} seeds = {len(prompts) * len(seeds)} samples per "
             f"weight, {args.new_tokens} new tokens each, preset {args.preset}; "
             f"{platform.processor() or platform.machine()}, one thread. The share of samples the stylometry model "
             f"reads as **{a}** when the mix gives it weight w (and {b} 1 − w):", "",
             "| w | " + " | ".join(f"{w:g}" for w in WEIGHTS) + " | gap from the line | climbs at every step | "
             "CPU s per sample |", "|---|" + "---:|" * (len(WEIGHTS) + 3)]
    for method, values in summary.items():
        lines.append(f"| {method} | " + " | ".join(f"{s:.0%}" for s in values["shares"]) +
                     f" | {values['gap']:.1%} | {'yes' if values['monotone'] else 'no'} | "
                     f"{values['cpu_per_sample']:.3f} |")
    lines += ["", end]
    publish("\n".join(lines), args.write, start, end)


if __name__ == "__main__":
    main()
