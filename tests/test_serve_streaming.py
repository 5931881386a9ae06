"""Shared serving pieces: server-sent events, and aborting work whose client has gone."""

from __future__ import annotations

import asyncio
import time

from dvoinik.serve.engine import Engine
from dvoinik.serve.streaming import aborted_if_client_leaves, job_stream, sse


def test_sse_encodes_json_and_multiline_text() -> None:
    assert sse({"token": "ё"}, "message") == 'event: message\ndata: {"token": "ё"}\n\n'
    assert sse("[DONE]") == "data: [DONE]\n\n"
    assert sse("a\nb") == "data: a\ndata: b\n\n"


class GoneAfter:
    """A request whose client hangs up after `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    async def is_disconnected(self) -> bool:
        return time.monotonic() > self.deadline


def until_stopped(double, job) -> str:
    while not job.should_stop():
        time.sleep(0.005)
    return "stopped"


def test_a_whole_answer_is_abandoned_when_its_client_hangs_up() -> None:
    async def scenario() -> tuple[str, float]:
        engine = Engine(double=None).start()  # type: ignore[arg-type]
        job = engine.submit(until_stopped)
        started = time.monotonic()
        async with aborted_if_client_leaves(GoneAfter(0.1), job, poll_seconds=0.02):
            result = await job.result()
        engine.stop()
        return result, time.monotonic() - started

    result, seconds = asyncio.run(scenario())
    assert result == "stopped" and seconds < 2


def test_a_stream_left_early_aborts_its_job_and_an_error_becomes_an_event() -> None:
    async def scenario() -> tuple[bool, list[str]]:
        engine = Engine(double=None).start()  # type: ignore[arg-type]

        def writes_forever(double, job) -> str:
            while not job.should_stop():
                job.text(0, "слово ")
                time.sleep(0.005)
            return "stopped"

        job = engine.submit(writes_forever)
        stream = job_stream(job, lambda event: [sse({"kind": event[0]})])
        await stream.__anext__()
        await stream.aclose()  # the client went away
        await asyncio.wait_for(job.result(), timeout=5)

        def fails(double, job):
            raise RuntimeError("boom")

        chunks = [c async for c in job_stream(engine.submit(fails), lambda event: [sse(list(event))])]
        engine.stop()
        return job.aborted, chunks

    aborted, chunks = asyncio.run(scenario())
    assert aborted
    assert chunks == [sse(["error", "internal error: RuntimeError"])]
