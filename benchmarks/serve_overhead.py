"""What `dvoinik serve` adds to a generation: HTTP and streaming overhead, concurrency, overload.

    python benchmarks/serve_overhead.py [--model tiny] [--new-tokens 64] [--write docs/benchmarks.md]

One run, one process: a randomly initialised built-in model with a byte-level BPE trained
on made-up Russian-looking prose, served by the real app (`create_app`) under uvicorn on a
free loopback port in a thread, driven by httpx from the main thread. The originality
guard is off (guard 0, no copy index): the guard's own cost is measured by
benchmarks/guard_overhead.py. Measured:

1. the baseline: `generate()` called directly, N new tokens, 1 variant, a fixed seed; and the
   same call as the engine's job makes it (streaming callback and abort check);
2. the same request through HTTP: OpenAI `/v1/completions` without and with streaming (time
   to first text and total), and the studio's streamed generate; each checked to write the
   baseline's text; medians over rounds that alternate all of them, so drift hits each alike;
3. one client sending requests in sequence vs 8 concurrent clients (the engine runs one job
   at a time): requests per second and p50/p95 latency;
4. overload: 50 simultaneous requests against a queue of 8: how many get 200, how many 503,
   the Retry-After values, and that none gets anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
from sections import publish

from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double
from dvoinik.generation.variants import generate
from dvoinik.serve.app import Server
from dvoinik.serve.engine import Engine
from dvoinik.serve.launch import serving_in_thread
from dvoinik.serve.store import Store
from dvoinik.tokens import train_bpe_tokenizer
from dvoinik.training.models import new_model
from dvoinik.workspace import GenerateSettings, ServeSettings

SECTION_START = "<!-- serve-overhead:start -->"
SECTION_END = "<!-- serve-overhead:end -->"
PRESET = "nucleus"
SYLLABLES = "ба ве го да ле ми но пу ра со ти ку ше ча ёж зы ль вь ст кр пр тр ой ей ар ор".split()


def prose(seed: int, paragraphs: int) -> str:
    """Paragraphs of 15-60 random words from a 3,000-word vocabulary of Russian syllables."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    return "\n\n".join(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(15, 60))).capitalize() + "."
                       for _ in range(paragraphs))



def sse_events(response: httpx.Response) -> Iterator[tuple[str | None, str]]:
    """(event name, data) for each server-sent event of a streamed response."""
    name, data = None, []
    for line in response.iter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield name, "\n".join(data)


class Timing:
    """Seconds to the first text (None when not streamed), seconds in all, and the text written."""

    def __init__(self, first: float | None, total: float, text: str) -> None:
        self.first, self.total, self.text = first, total, text


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (Linux; 0 elsewhere) and by this process."""
    own = sum(os.times()[:2])
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, own
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK"), own


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--vocab", type=int, default=2000)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=2, help="requests each concurrent client sends in turn")
    parser.add_argument("--load-rounds", type=int, default=3, help="rounds alternating one client and --clients")
    parser.add_argument("--queue-size", type=int, default=8)
    parser.add_argument("--overload", type=int, default=50, help="simultaneous requests for the overload test")
    parser.add_argument("--write", type=Path, default=None, help="replace the section in this markdown file")
    args = parser.parse_args()

    import torch

    began = time.perf_counter()
    machine_before, own_before = cpu_seconds()
    tokenizer = train_bpe_tokenizer(lambda: iter(prose(seed, 400) for seed in range(8)), args.vocab)
    model = new_model(args.model, len(tokenizer), tokenizer.eos_token_id, 1024, seed=0)
    model.eval()
    double = Double(model, tokenizer, f"{args.model}-random", None, 1024)
    prompt = prose(1000, 2)
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False).input_ids)

    def decoding(seed: int):
        return decoding_for(PRESET, max_new_tokens=args.new_tokens, seed=seed)

    # A seed whose continuation does not meet the end of text early, so every request writes N tokens.
    seed = next(s for s in range(1, 100)
                if generate(double, prompt, decoding(s)).variants[0].new_tokens == args.new_tokens)
    expected = generate(double, prompt, decoding(seed)).variants[0].text
    print(f"tokenizer {len(tokenizer):,} tokens; prompt {prompt_tokens} tokens; seed {seed}; "
          f"setup {time.perf_counter() - began:.1f} s")

    settings = ServeSettings(queue_size=args.queue_size, max_variants=8, max_new_tokens=1024)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "studio.sqlite3")
        server = Server(Engine(double, args.queue_size), store, settings, GenerateSettings(preset=PRESET, guard=0))
        with serving_in_thread(server) as url:
            results = measure(args, url, double, prompt, decoding(seed), seed, expected)
    results["prompt_tokens"] = prompt_tokens
    results["seed"] = seed
    results["vocab"] = len(tokenizer)
    results["params"] = sum(p.numel() for p in model.parameters()) / 1e6
    results["seconds"] = time.perf_counter() - began
    machine_after, own_after = cpu_seconds()
    results["others"] = max(0.0, (machine_after - machine_before) - (own_after - own_before))
    report(args, results, torch)


def measure(args: argparse.Namespace, url: str, double: Double, prompt: str, decoding, seed: int,
            expected: str) -> dict:
    n_new = args.new_tokens
    completion = {"model": "double", "prompt": prompt, "max_tokens": n_new, "seed": seed, "n": 1}
    studio_body = {"preset": PRESET, "n": 1, "max_new_tokens": n_new, "guard": 0, "seed": seed}

    def direct() -> Timing:
        started = time.perf_counter()
        text = generate(double, prompt, decoding).variants[0].text
        return Timing(None, time.perf_counter() - started, text)

    def direct_streamed() -> Timing:  # what the engine's job does for a stream: a text callback, an abort check
        first: list[float] = []
        started = time.perf_counter()

        def on_text(variant: int, piece: str) -> None:
            if piece and not first:
                first.append(time.perf_counter() - started)

        text = generate(double, prompt, decoding, on_text=on_text, should_stop=lambda: False).variants[0].text
        return Timing(first[0] if first else None, time.perf_counter() - started, text)

    client = httpx.Client(base_url=url, timeout=300)
    doc_id = client.post("/studio/api/documents", json={"title": "bench", "text": prompt}).raise_for_status().json()["id"]

    def openai_plain() -> Timing:
        started = time.perf_counter()
        response = client.post("/v1/completions", json=completion)
        total = time.perf_counter() - started
        response.raise_for_status()
        return Timing(None, total, response.json()["choices"][0]["text"])

    def openai_stream() -> Timing:
        started = time.perf_counter()
        first, text = None, ""
        with client.stream("POST", "/v1/completions", json={**completion, "stream": True}) as response:
            response.raise_for_status()
            for _, data in sse_events(response):
                if data == "[DONE]":
                    break
                choices = json.loads(data)["choices"]
                piece = choices[0]["text"] if choices else ""
                if piece and first is None:
                    first = time.perf_counter() - started
                text += piece
        return Timing(first, time.perf_counter() - started, text)

    def studio_stream() -> Timing:
        started = time.perf_counter()
        first, text = None, ""
        with client.stream("POST", f"/studio/api/documents/{doc_id}/generate", json=studio_body) as response:
            response.raise_for_status()
            for name, data in sse_events(response):
                if name == "text" and first is None:
                    first = time.perf_counter() - started
                elif name == "done":
                    text = json.loads(data)["variants"][0]["text"]
                elif name == "error":
                    raise RuntimeError(f"studio stream error: {data}")
        return Timing(first, time.perf_counter() - started, text)

    kinds: dict[str, Callable[[], Timing]] = {
        "direct": direct, "direct_streamed": direct_streamed, "openai": openai_plain,
        "openai_stream": openai_stream, "studio_stream": studio_stream,
    }
    timings: dict[str, list[Timing]] = {k: [] for k in kinds}
    mismatched: set[str] = set()
    for kind, run in kinds.items():  # warm-up: first calls pay for imports and allocations
        if run().text != expected:
            mismatched.add(kind)
    for round_ in range(args.rounds):
        order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))  # alternating, so drift hits all alike
        for kind in order:
            timing = kinds[kind]()
            timings[kind].append(timing)
            if timing.text != expected:
                mismatched.add(kind)
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {timings[k][-1].total * 1e3:.0f} ms" for k in kinds))
    client.close()

    load = asyncio.run(concurrency(args, url, completion))
    return {"timings": timings, "mismatched": sorted(mismatched), **load}


async def concurrency(args: argparse.Namespace, url: str, completion: dict) -> dict:
    limits = httpx.Limits(max_connections=args.overload + 10, max_keepalive_connections=args.overload + 10)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        async def one() -> tuple[float, httpx.Response]:
            started = time.perf_counter()
            response = await client.post("/v1/completions", json=completion)
            return time.perf_counter() - started, response

        async def sender(count: int) -> list[tuple[float, httpx.Response]]:
            return [await one() for _ in range(count)]

        total = args.clients * args.per_client
        modes = {"sequential": 1, "concurrent": args.clients}
        answers: dict[str, list[tuple[float, httpx.Response]]] = {name: [] for name in modes}
        walls = {name: 0.0 for name in modes}
        for round_ in range(args.load_rounds):  # alternating, so drift hits both alike
            for name in (modes if round_ % 2 == 0 else reversed(modes)):
                clients = modes[name]
                started = time.perf_counter()
                batches = await asyncio.gather(*(sender(total // clients) for _ in range(clients)))
                walls[name] += time.perf_counter() - started
                answers[name] += [a for batch in batches for a in batch]
                print(f"load round {round_ + 1}, {name}: {total} requests in {time.perf_counter() - started:.2f} s")
        load = {}
        for name, clients in modes.items():
            statuses = Counter(r.status_code for _, r in answers[name])
            latencies = [s for s, r in answers[name] if r.status_code == 200]
            load[name] = {"clients": clients, "requests": len(answers[name]), "wall": walls[name],
                          "statuses": statuses, "rps": statuses[200] / walls[name], "p50": percentile(latencies, 50),
                          "p95": percentile(latencies, 95), "max": max(latencies)}
            print(f"{name}: {len(answers[name])} requests from {clients} client(s) in {walls[name]:.2f} s, "
                  f"{dict(statuses)}, p50 {load[name]['p50']:.2f} s, p95 {load[name]['p95']:.2f} s")

        started = time.perf_counter()
        burst = await asyncio.gather(*(one() for _ in range(args.overload)))
        wall = time.perf_counter() - started
        statuses = Counter(r.status_code for _, r in burst)
        retry = Counter(r.headers.get("retry-after") for _, r in burst if r.status_code == 503)
        odd = [(r.status_code, r.text[:300]) for _, r in burst if r.status_code not in (200, 503)]
        rejected = [s for s, r in burst if r.status_code == 503]
        served = [s for s, r in burst if r.status_code == 200]
        shapes = {json.dumps(r.json(), sort_keys=True) for _, r in burst if r.status_code == 503}
        overload = {"statuses": statuses, "retry": retry, "odd": odd, "wall": wall,
                    "reject_max": max(rejected) if rejected else None, "served_max": max(served) if served else None,
                    "shapes": sorted(shapes)}
        print(f"overload: {args.overload} at once, queue {args.queue_size}: {dict(statuses)}, "
              f"Retry-After {dict(retry)}, {wall:.2f} s")
        for status, text in odd:
            print(f"  unexpected {status}: {text}")
        for shape in shapes:
            print(f"  503 body: {shape}")
        return {**load, "overload": overload}


def report(args: argparse.Namespace, results: dict, torch) -> None:
    timings = results["timings"]
    base = statistics.median(t.total for t in timings["direct"])
    labels = {
        "direct": "`generate()` called directly (baseline)",
        "direct_streamed": "`generate()` with a text callback and abort check, as the engine's streamed job",
        "openai": "OpenAI `/v1/completions`, not streamed (httpx)",
        "openai_stream": "OpenAI `/v1/completions`, `stream: true`",
        "studio_stream": "studio `POST /studio/api/documents/{id}/generate` (SSE, logged to SQLite)",
    }
    rows = []
    for kind, label in labels.items():
        totals = [t.total for t in timings[kind]]
        firsts = [t.first for t in timings[kind] if t.first is not None]
        median = statistics.median(totals)
        first = f"{statistics.median(firsts) * 1e3:.0f}" if firsts else "–"
        q1, q3 = percentile(totals, 25), percentile(totals, 75)
        rows.append(f"| {label} | {first} | {median * 1e3:.0f} | {q1 * 1e3:.0f}–{q3 * 1e3:.0f} | {median / base:.2f} | "
                    f"{(median - base) * 1e3:+.0f} |")
        print(f"{kind:16} first {first:>5} ms, median {median * 1e3:.0f} ms, ×{median / base:.2f}")

    seq, con, over = results["sequential"], results["concurrent"], results["overload"]
    load_rows = []
    for name, row in (("one client, in sequence", seq), (f"{con['clients']} concurrent clients", con)):
        other = ", ".join(f"{n} × {s}" for s, n in sorted(row["statuses"].items()) if s != 200)
        load_rows.append(f"| {name} | {row['requests']} | {row['wall']:.2f} | {row['rps']:.2f} | {row['p50']:.2f} | "
                         f"{row['p95']:.2f} | {row['max']:.2f} | {other or 'none'} |")
    statuses = over["statuses"]
    retry = ", ".join(f"{value} s × {count}" for value, count in sorted(over["retry"].items(), key=str)) or "none"
    others = sum(n for s, n in statuses.items() if s not in (200, 503))

    if torch.cuda.is_available():
        where = f"{torch.cuda.get_device_name()} (the model stays on the CPU here)"
    else:
        where = "no GPU"
    machine = (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
               f"({torch.get_num_threads()} threads, fp32), Python {platform.python_version()}, {where}")
    mismatch = ("Every route wrote the baseline's text" if not results["mismatched"]
                else "**text differed from the baseline:** " + ", ".join(results["mismatched"]))
    openai_ratio = statistics.median(t.total for t in timings["openai"]) / base
    stream_added = statistics.median(t.total for t in timings["openai_stream"]) - base
    stream_first = statistics.median(t.first for t in timings["openai_stream"] if t.first is not None)
    base_q1, base_q3 = (percentile([t.total for t in timings["direct"]], q) for q in (25, 75))
    within = "within" if base_q1 <= openai_ratio * base <= base_q3 else "outside"
    lines = [
        SECTION_START,
        "## Serving overhead (`dvoinik serve`, CPU)",
        "",
        f"`python benchmarks/serve_overhead.py --model {args.model}` on {machine}; {results['seconds']:.0f} s in all. "
        f"Built-in `{args.model}` ({results['params']:.1f}M weights, random init), byte-level BPE of "
        f"{results['vocab']:,} tokens trained on made-up Russian-looking prose; a {results['prompt_tokens']}-token "
        f"prompt, {args.new_tokens} new tokens, 1 variant, preset `{PRESET}`, seed {results['seed']} (one that writes "
        f"all {args.new_tokens} tokens), **guard 0** (no copy index; the guard's cost is in the sections above). "
        f"The real app under uvicorn on loopback, in a thread of the benchmark's own process, driven by httpx "
        f"from its main thread (client, event loop and model share the cores and the GIL); other processes used "
        f"{results['others']:.0f} CPU-seconds of the {results['seconds'] * (os.cpu_count() or 1):.0f} the run's "
        f"wall time offered. {mismatch}.",
        "",
        f"One request at a time, medians of {args.rounds} rounds alternating all five (after one warm-up each):",
        "",
        "| path | first text (ms) | total (ms) | quartiles (ms) | × baseline | added (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Load, OpenAI `/v1/completions` not streamed, the same request each time, queue_size {args.queue_size}; "
        f"{args.load_rounds} rounds alternating one client sending {args.clients * args.per_client} requests in turn "
        f"and {args.clients} clients sending {args.per_client} each at once (each request's latency counted, "
        f"requests/s over the rounds' summed wall time):",
        "",
        "| clients | requests | wall (s) | requests/s | p50 latency (s) | p95 (s) | max (s) | not 200 |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *load_rows,
        "",
        f"Overload: {args.overload} requests at once against queue_size {args.queue_size}: "
        f"**{statuses[200]} × 200, {statuses[503]} × 503, {others} × anything else** in {over['wall']:.1f} s; "
        f"Retry-After {retry}; the slowest 503 came back in "
        + (f"{over['reject_max'] * 1e3:.0f} ms" if over["reject_max"] is not None else "–")
        + (f", the slowest 200 in {over['served_max']:.1f} s." if over["served_max"] is not None else "."),
        "",
        f"Reading: a whole answer through HTTP took {openai_ratio:.2f}× the direct call, {within} the baseline's own "
        f"spread ({base_q1 * 1e3:.0f}–{base_q3 * 1e3:.0f} ms, quartiles); streaming added {stream_added * 1e3:+.0f} ms "
        f"per {args.new_tokens}-token answer ({stream_added / args.new_tokens * 1e3:+.2f} ms per token event), the "
        f"first text arriving after {stream_first * 1e3:.0f} ms. The engine runs one job at a time, so "
        f"{con['clients']} clients got {con['rps'] / seq['rps']:.2f}× the throughput of one while their median "
        f"latency grew {con['p50'] / seq['p50']:.1f}× (queueing), and past 1 running + {args.queue_size} waiting "
        f"jobs the server answered 503 at once, with Retry-After, never 500.",
        SECTION_END,
    ]
    publish("\n".join(lines), args.write, SECTION_START, SECTION_END)


if __name__ == "__main__":
    sys.exit(main())
