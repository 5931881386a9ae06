"""Generation jobs and server-sent events, shared by the studio, KoboldAI and OpenAI routes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from dvoinik.generation.decoding import Decoding, GenerationError
from dvoinik.generation.double import Double, set_style_mix
from dvoinik.generation.interview import Frame, answer_opens_with_text
from dvoinik.generation.variants import Generation, generate
from dvoinik.generation.voices import Voice
from dvoinik.serve.engine import Aborted, Job, Work
from dvoinik.serve.store import Store, new_generation_id

if TYPE_CHECKING:
    from dvoinik.serve.app import Server


def generation_work(prompt: str, decoding: Decoding, n: int = 1, guard: int = 0, stream: bool = True,
                    voice: Voice | None = None) -> Work:
    """A job that writes `n` variants of `prompt` (in `voice`), streaming their text and stopping when aborted."""
    def work(double: Double, job: Job) -> Generation:
        return generate(double, prompt, decoding, n, guard, on_text=job.text if stream else None,
                        should_stop=job.should_stop, voice=voice)

    return work


def answering(frame: Frame, work: Work) -> Work:
    """`work` writing an interview's answer: it may not open by ending its turn (generation/interview.py)."""
    def framed(double: Double, job: Job) -> Any:
        with answer_opens_with_text(double, frame):
            return work(double, job)

    return framed


def with_style_mix(weights: dict[str, float], work: Work) -> Work:
    """`work` run after making `weights` the double's mix (in the model's thread, between generations)."""
    def mixed(double: Double, job: Job) -> Any:
        set_style_mix(double, weights)
        return work(double, job)

    return mixed


def submit_logged(server: Server, source: str, prompt: str, decoding: Decoding, n: int, guard: int,
                  stream: bool = True, document_id: int | None = None, settings: dict | None = None,
                  style: dict[str, float] | None = None, voice: Voice | None = None,
                  frame: Frame | None = None) -> Job:
    """Queue a generation (Busy: 503) and log it under the job's id: "running" now, its outcome when it ends.

    The outcome is written from the job's future, not by the request, so a client that
    goes away mid-stream still leaves its variants (cut where the abort landed) in the log.
    A server of a style mix sets the mix for every job (the request's, else the one it was
    started with), so one request's sliders never leak into the next.
    """
    work = generation_work(prompt, decoding, n, guard, stream, voice)
    if frame is not None:
        work = answering(frame, work)
    if server.engine.double.styles:
        work = with_style_mix(style or server.style, work)
    job = server.engine.submit(work, new_generation_id())
    logged = settings if settings is not None else {**asdict(decoding), "stop": list(decoding.stop), "n": n,
                                                     "guard": guard}
    if voice:
        logged = {**logged, "voice": voice}
    try:
        server.store.log_start(source, prompt, logged, decoding.seed, server.engine.double.checkpoint, document_id,
                               job.id)
    except Exception:
        job.abort()  # unlogged work is work for nobody
        raise
    job.future.add_done_callback(lambda future: log_outcome(server.store, job.id, future))
    return job


def log_outcome(store: Store, generation_id: str, future: Any) -> None:
    """done, aborted (by a client, a closed stream, or before it began) or failed, with the variants written."""
    if future.cancelled():
        store.log_finish(generation_id, "aborted", [])
        return
    error = future.exception()
    if error is not None:
        store.log_finish(generation_id, "aborted" if isinstance(error, Aborted) else "failed", [])
        return
    result: Generation = future.result()
    aborted = any(v.finish_reason == "abort" for v in result.variants)
    # A style mix is named when the job makes it, so the checkpoint comes from the result.
    store.log_finish(generation_id, "aborted" if aborted else "done", result.to_json()["variants"], result.checkpoint)


@asynccontextmanager
async def aborted_if_client_leaves(request: Any, job: Job, poll_seconds: float = 0.25) -> AsyncIterator[None]:
    """While the body runs, abort `job` if the client hangs up: nobody would read a whole answer written for nobody.

    (Streams notice a closed connection by themselves; a request waiting for a whole answer
    has to look.)
    """
    async def watch() -> None:
        while not job.future.done():
            if await request.is_disconnected():
                job.abort()
                return
            await asyncio.sleep(poll_seconds)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event; `data` is sent as JSON unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"


async def job_stream(job: Job, encode: Callable[[tuple], list[str]]) -> AsyncIterator[str]:
    """The job's events, each turned into SSE text by `encode`; the job is aborted if the client goes away.

    Events are ("text", variant, piece), ("done", result) and, when the job fails,
    ("error", message): the stream has begun, so a failure can no longer be a status code.
    """
    finished = False
    try:
        try:
            async for event in job.events():
                for chunk in encode(event):
                    yield chunk
        except Exception as exc:  # noqa: BLE001 - told to the client in the stream's own format
            message = str(exc) if isinstance(exc, (GenerationError, Aborted)) else f"internal error: {type(exc).__name__}"
            for chunk in encode(("error", message)):
                yield chunk
        finished = True
    finally:
        if not finished:  # the client closed the stream (or the server is stopping): stop writing for nobody
            job.abort()
