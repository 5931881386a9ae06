"""Generation jobs and server-sent events, shared by the studio, KoboldAI and OpenAI routes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from dvoinik.generation import Decoding, Double, Generation, GenerationError, generate
from dvoinik.serve.engine import Aborted, Job, Work


def generation_work(prompt: str, decoding: Decoding, n: int = 1, guard: int = 0, stream: bool = True) -> Work:
    """A job that writes `n` variants of `prompt`, streaming their text and stopping when aborted."""
    def work(double: Double, job: Job) -> Generation:
        return generate(double, prompt, decoding, n, guard, on_text=job.text if stream else None,
                        should_stop=job.should_stop)

    return work


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
