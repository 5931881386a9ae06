"""The figures of the hardening work, each against a baseline measured in the same run.

    python benchmarks/hardening.py [--write docs/benchmarks.md]

1. A sparse tar: a 2 KB tar whose one member unpacks to 2 GiB, read by `read_file` in a
   fresh process (as a corpus worker reads it): its peak memory, against the same process
   reading a 2 KB text file.
2. The studio's history: a 314,000-character novel and 100 edits anywhere in it, stored as
   differences (the store today) against the same history stored as whole states (what each
   undo step held before), in database bytes; and the time of an undo and a redo.
3. Stop strings: `generate()` with no stop strings, with the most the APIs allow (64 strings,
   2,000 characters together) matched as text (today), and with the same strings matched by
   transformers' StopStringCriteria (before); and how fast a request with 64 strings of
   1,000 characters is refused now.
4. Slow clients: 300 connections that never finish a request (100 silent, 100 with half a
   head, 100 with half a body) against the real app under uvicorn, with today's protocol
   (deadlines, `[serve] header_timeout` 2 s) and with uvicorn's plain one: connections the
   server still holds 4 s later, and /healthz's answer time meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sections import publish

SECTION_START = "<!-- hardening:start -->"
SECTION_END = "<!-- hardening:end -->"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- 1. sparse tar


def sparse_tar(real_size: int) -> bytes:
    """A GNU tar whose one member stores 1 byte and unpacks to `real_size` (tarfile cannot write sparse members)."""
    import tarfile

    info = tarfile.TarInfo("hole.txt")
    info.size = 1
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:410] = tarfile.itn(0, 12, tarfile.GNU_FORMAT) + tarfile.itn(1, 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b"        "
    header[148:156] = f"{sum(header[:512]):06o}\0 ".encode()
    return bytes(header[:512]) + b"a" + b"\0" * 511 + b"\0" * 1024


READ_IN_A_FRESH_PROCESS = """
import json, resource, sys, time
from dvoinik.corpus.readers import read_file
started = time.perf_counter()
result = read_file(sys.argv[1])
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": time.perf_counter() - started,
                  "outcome": result.skipped[0].reason if result.skipped else f"{len(result.texts)} text(s)"}))
"""


def measure_sparse_tar(tmp: Path) -> dict:
    tar = tmp / "sparse.tar"
    tar.write_bytes(sparse_tar(2 * 1024**3))
    text = tmp / "plain.txt"
    text.write_text("Он вышел на улицу и долго смотрел на реку. " * 48, encoding="utf-8")
    out = {}
    for name, path in (("plain", text), ("sparse", tar)):
        run = subprocess.run([sys.executable, "-c", READ_IN_A_FRESH_PROCESS, str(path)], capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        out[name] = {**json.loads(run.stdout), "bytes": path.stat().st_size}
    return out


# ---------------------------------------------------------------- 2. history


def novel(chars: int) -> str:
    rng = random.Random(0)
    words = ("он она сказал тихо дорога река зима окно свет ночь утро дом сад пришёл ушёл думал смотрел "
             "долго поле лес берег вода небо").split()
    out, size = [], 0
    while size < chars:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(5, 16))).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:chars]


def database_bytes(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def measure_history(tmp: Path, chars: int, edits: int) -> dict:
    from dvoinik.serve import store as store_module
    from dvoinik.serve.store import DocumentState, Store

    store_module.FOLD_SECONDS = 0.0  # every edit its own undo step
    rng = random.Random(1)
    text = novel(chars)
    states = [DocumentState(text=text)]
    for edit in range(edits):  # a word put in, a sentence cut or rewritten, anywhere in the book
        at = rng.randrange(len(text))
        text = text[:at] + f" правка {edit}" + text[at + rng.randrange(0, 80):]
        states.append(DocumentState(text=text, memory=f"Память {edit // 10}."))

    today = tmp / "diffs" / "studio.sqlite3"
    store = Store.open(today)
    doc = store.create_document("Роман", states[0])
    started = time.perf_counter()
    for state in states[1:]:
        store.update_document(doc.id, state=state)
    save_seconds = (time.perf_counter() - started) / edits
    started = time.perf_counter()
    for _ in range(edits):
        store.step(doc.id, -1)
    undo = (time.perf_counter() - started) / edits
    assert store.document(doc.id).state == states[0]
    started = time.perf_counter()
    for _ in range(edits):
        store.step(doc.id, +1)
    redo = (time.perf_counter() - started) / edits
    assert store.document(doc.id).state == states[-1]
    store.close()

    # The same history as the previous store kept it: every revision the whole state.
    whole = tmp / "whole" / "studio.sqlite3"
    whole.parent.mkdir()
    with sqlite3.connect(whole) as db:
        db.execute("CREATE TABLE revisions (document_id INTEGER, number INTEGER, kind TEXT, state TEXT, "
                   "created_at REAL, updated_at REAL, PRIMARY KEY (document_id, number))")
        db.executemany("INSERT INTO revisions VALUES (1, ?, 'edit', ?, 0, 0)",
                       [(n, json.dumps(s.to_json(), ensure_ascii=False)) for n, s in enumerate(states, start=1)])
    return {"chars": len(states[-1].text), "edits": edits, "diff_bytes": database_bytes(today),
            "whole_bytes": database_bytes(whole), "save_ms": save_seconds * 1000, "undo_ms": undo * 1000,
            "redo_ms": redo * 1000}


# ---------------------------------------------------------------- 3. stop strings


def measure_stops(tmp: Path, new_tokens: int, rounds: int) -> dict:
    import torch

    from dvoinik.generation import variants
    from dvoinik.generation.decoding import decoding_for
    from dvoinik.generation.double import Double
    from dvoinik.generation.variants import generate
    from dvoinik.serve.app import Server
    from dvoinik.serve.engine import Engine
    from dvoinik.serve.launch import serving_in_thread
    from dvoinik.serve.store import Store
    from dvoinik.tokens import train_bpe_tokenizer
    from dvoinik.training.models import new_model

    torch.set_num_threads(1)
    texts = [novel(20_000 + i) for i in range(4)]
    tokenizer = train_bpe_tokenizer(lambda: iter(texts), 2000)
    model = new_model("tiny", len(tokenizer), tokenizer.eos_token_id, 1024, seed=0).eval()
    double = Double(model, tokenizer, "tiny-random", None, 1024)
    rng = random.Random(2)
    letters = "йцукенгшщзхъфывапролджэячсмитьбю"
    # Never written, so every step looks for every one: 64 × 31 characters (the most the APIs take), 64 × 1,000.
    allowed = tuple("".join(rng.choice(letters) for _ in range(29)) + f"{i:02x}" for i in range(64))
    audited = tuple("".join(rng.choice(letters) for _ in range(998)) + f"{i:02x}" for i in range(64))
    prompt = novel(300)

    def timed(stop: tuple[str, ...]) -> float:
        decoding = decoding_for("nucleus", max_new_tokens=new_tokens, seed=1, stop=stop)
        started = time.perf_counter()
        result = generate(double, prompt, decoding)
        assert result.variants[0].new_tokens == new_tokens
        return time.perf_counter() - started

    class TransformersStops:  # the previous path: transformers' token-level StopStringCriteria
        def __enter__(self):
            self.real = variants._stopping

            def stopping(should_stop, tokenizer=None, stop=(), prompt_length=0):
                from transformers import StoppingCriteriaList, StopStringCriteria

                return StoppingCriteriaList([StopStringCriteria(tokenizer, list(stop))]) if stop else None

            variants._stopping = stopping

        def __exit__(self, *exc):
            variants._stopping = self.real

    timed(())  # warm-up
    times: dict[str, list[float]] = {key: [] for key in ("none", "text", "transformers", "text_1000",
                                                        "transformers_1000")}
    for _ in range(rounds):  # alternating, so that the machine's drift hits each alike
        times["none"].append(timed(()))
        times["text"].append(timed(allowed))
        times["text_1000"].append(timed(audited))
        with TransformersStops():
            times["transformers"].append(timed(allowed))
            times["transformers_1000"].append(timed(audited))
    # Each matcher alone, as generate() calls it after every token: on 64 steps of real generated ids.
    written = generate(double, prompt, decoding_for("nucleus", max_new_tokens=new_tokens, seed=1)).variants[0].ids
    ids = torch.tensor([list(tokenizer(prompt, add_special_tokens=False).input_ids) + list(written)])
    start = ids.shape[1] - len(written)

    def per_step(make: Any) -> float:
        best = float("inf")
        for _ in range(5):  # the least disturbed of five passes
            matcher = make()
            began = time.perf_counter()
            for end in range(start + 1, ids.shape[1] + 1):
                matcher(ids[:, :end], None)
            best = min(best, (time.perf_counter() - began) / len(written))
        return best * 1000

    from transformers import StopStringCriteria

    from dvoinik.generation.streamer import StopStringsCriterion

    matcher_ms = {}
    for name, stop in (("31", allowed), ("1000", audited)):
        matcher_ms[f"text_{name}"] = per_step(lambda stop=stop: StopStringsCriterion(tokenizer, stop, start))
        matcher_ms[f"transformers_{name}"] = per_step(lambda stop=stop: StopStringCriteria(tokenizer, list(stop)))
    server = Server(Engine(double), Store.open(tmp / "stops.sqlite3"))
    with serving_in_thread(server) as url:
        too_many = ["я" * 990 + str(i) for i in range(64)]
        started = time.perf_counter()
        answer = httpx.post(url + "/api/v1/generate", json={"prompt": prompt, "max_length": new_tokens,
                                                            "stop_sequence": too_many}, timeout=60)
        refused_ms = (time.perf_counter() - started) * 1000
    return {"new_tokens": new_tokens, "rounds": rounds, "allowed_chars": sum(map(len, allowed)),
            "median_s": {k: statistics.median(v) for k, v in times.items()}, "matcher_ms": matcher_ms,
            "refused_status": answer.status_code,
            "refused_ms": refused_ms}


# ---------------------------------------------------------------- 4. slow clients


@contextmanager
def app_server(tmp: Path, guarded: bool):
    """The real app on a free loopback port, with today's protocol or uvicorn's plain one; yields (url, held())."""
    import threading

    import uvicorn

    from dvoinik.generation.double import Double
    from dvoinik.serve.app import Server
    from dvoinik.serve.engine import Engine
    from dvoinik.serve.launch import uvicorn_config
    from dvoinik.serve.store import Store
    from dvoinik.workspace import ServeSettings

    server = Server(Engine(Double(None, None, "none")), Store.open(tmp / f"slow-{guarded}.sqlite3"),
                    replace(ServeSettings(), header_timeout=2.0, body_timeout=2.0, max_connections=1000))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn_config(server, "127.0.0.1", port, log_level="error")
    if not guarded:  # uvicorn as it comes: no deadline for a request's head or body
        config = uvicorn.Config(config.app, host="127.0.0.1", port=port, log_level="critical", lifespan="on",
                                http="h11")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", lambda: len(instance.server_state.connections)
    finally:
        instance.should_exit = True
        instance.force_exit = True
        thread.join(timeout=30)


def measure_slow_clients(tmp: Path, per_kind: int) -> dict:
    out = {}
    for guarded in (False, True):
        with app_server(tmp, guarded) as (url, held), ExitStack() as stack:
            port = int(url.rsplit(":", 1)[1])
            sockets = [stack.enter_context(socket.create_connection(("127.0.0.1", port))) for _ in range(3 * per_kind)]
            for sock in sockets[per_kind: 2 * per_kind]:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            for sock in sockets[2 * per_kind:]:
                sock.sendall(b"POST /studio/api/documents HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
            time.sleep(0.5)
            opened = held()
            started = time.perf_counter()
            health = httpx.get(url + "/healthz", timeout=10).status_code
            health_ms = (time.perf_counter() - started) * 1000
            time.sleep(4.0)
            out["guarded" if guarded else "plain"] = {"opened": opened, "held_after_4s": held(),
                                                      "healthz": health, "healthz_ms": health_ms}
    return out


# ---------------------------------------------------------------- report


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (Linux; 0 elsewhere) and by this process and its children."""
    own = sum(os.times()[:4])
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, own
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK"), own


def report(sparse: dict, history: dict, stops: dict, slow: dict, seconds: float, busy: float) -> str:
    import torch

    mb = 1024 * 1024
    med, ms = stops["median_s"], stops["matcher_ms"]
    per = 3 * (slow["guarded"]["opened"] // 3 if slow["guarded"]["opened"] else 0)
    lines = [
        SECTION_START,
        "## Hardening: a sparse tar, a novel's history, stop strings, slow clients",
        "",
        f"`python benchmarks/hardening.py` on {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, Python {platform.python_version()}; {seconds:.0f} s in all. Each figure has "
        "its baseline from the same run.",
        "",
        "| what | now | baseline | |",
        "|---|---:|---:|---|",
        f"| peak memory of a process reading a {sparse['sparse']['bytes']:,}-byte tar whose member unpacks to 2 GiB "
        f"| {sparse['sparse']['peak_mb']:.0f} MB | {sparse['plain']['peak_mb']:.0f} MB | the same process reading a "
        f"{sparse['plain']['bytes']:,}-byte text; the tar is refused: “{sparse['sparse']['outcome']}” in "
        f"{sparse['sparse']['seconds'] * 1000:.1f} ms |",
        f"| studio database after a {history['chars']:,}-character novel and {history['edits']} edits "
        f"| {history['diff_bytes'] / mb:.2f} MB | {history['whole_bytes'] / mb:.1f} MB | the same history as whole "
        f"states (the previous store); an edit saved in {history['save_ms']:.0f} ms, an undo in "
        f"{history['undo_ms']:.0f} ms, a redo in {history['redo_ms']:.0f} ms |",
        f"| `generate()` of {stops['new_tokens']} tokens with 64 stop strings, {stops['allowed_chars']:,} characters "
        f"(the most the APIs take), matched as text | {med['text']:.2f} s ({med['text'] / med['none']:.2f}×) "
        f"| {med['none']:.2f} s | no stop strings; with transformers' StopStringCriteria (the previous matcher) "
        f"{med['transformers']:.2f} s ({med['transformers'] / med['none']:.2f}×); medians of {stops['rounds']} |",
        f"| the same with 64 stop strings of 1,000 characters (the audited request) | {med['text_1000']:.2f} s "
        f"({med['text_1000'] / med['none']:.2f}×) | {med['none']:.2f} s | with transformers' StopStringCriteria "
        f"{med['transformers_1000']:.2f} s ({med['transformers_1000'] / med['none']:.1f}×) |",
        f"| the stop-string matcher alone, per token: 64 × 31 characters; 64 × 1,000 | {ms['text_31']:.2f} ms; "
        f"{ms['text_1000']:.2f} ms | {ms['transformers_31']:.2f} ms; {ms['transformers_1000']:.1f} ms | transformers' "
        "StopStringCriteria, on the same 64 steps of generated ids (the least disturbed of 5 passes) |",
        f"| a KoboldAI request with 64 stop strings of 1,000 characters | {stops['refused_status']} in "
        f"{stops['refused_ms']:.0f} ms | – | refused, naming `stop_sequence` (the total is bounded at 2,000) |",
        f"| connections held 4 s after {per} clients stopped mid-request | {slow['guarded']['held_after_4s']} "
        f"| {slow['plain']['held_after_4s']} | uvicorn's plain protocol; /healthz answered meanwhile in "
        f"{slow['guarded']['healthz_ms']:.0f} ms (plain: {slow['plain']['healthz_ms']:.0f} ms); a third silent, a "
        "third with half a head, a third with half a body; deadline 2 s |",
        "",
        f"Other processes used {busy:.0f} CPU-seconds of the {seconds * (os.cpu_count() or 1):.0f} the run's wall "
        "time offered: the times are comparable within this run, not with other runs.",
        "",
        "Reading: the tar's member is charged its unpacked size before a byte is read, so the worker never "
        "grows (the previous reader unpacked it: 4,132 MB and 43 s on the same machine). The history holds each "
        "edit's replaced span, not the book, so its size follows the edits, not the book's length times the "
        "edits. Stop strings are looked for in the text only where one could have just ended, so their "
        "length barely counts; transformers' token tables grow with it. A client that never finishes its "
        "request is cut off at its deadline, and the descriptors it held come back.",
        SECTION_END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=314_000)
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--slow-clients", type=int, default=100, help="connections of each slow kind")
    parser.add_argument("--write", type=Path, default=None, help="replace the section in this markdown file")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))  # 300 connections, both ends
    began = time.perf_counter()
    machine_before, own_before = cpu_seconds()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        sparse = measure_sparse_tar(tmp)
        print("sparse tar:", sparse, flush=True)
        history = measure_history(tmp, args.chars, args.edits)
        print("history:", history, flush=True)
        slow = measure_slow_clients(tmp, args.slow_clients)
        print("slow clients:", slow, flush=True)
        stops = measure_stops(tmp, args.new_tokens, args.rounds)
        print("stops:", stops, flush=True)
    machine_after, own_after = cpu_seconds()
    busy = max(0.0, (machine_after - machine_before) - (own_after - own_before))
    publish(report(sparse, history, stops, slow, time.perf_counter() - began, busy), args.write, SECTION_START,
            SECTION_END)


if __name__ == "__main__":
    main()
