"""The engine: one job at a time, a bounded queue that answers Busy, aborts, and streamed events."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from dvoinik.serve.engine import Aborted, Busy, Engine


def test_jobs_run_one_at_a_time_in_order() -> None:
    engine = Engine(double=None, queue_size=4).start()  # type: ignore[arg-type]
    order: list[int] = []
    lock = threading.Lock()

    def work(i: int):
        def run(double, job):
            with lock:
                order.append(i)
            time.sleep(0.01)
            return i * 10
        return run

    jobs = [engine.submit(work(i)) for i in range(4)]
    assert [j.future.result(timeout=5) for j in jobs] == [0, 10, 20, 30]
    assert order == [0, 1, 2, 3]
    engine.stop()


def test_a_full_queue_answers_busy_with_a_retry_time() -> None:
    engine = Engine(double=None, queue_size=2).start()  # type: ignore[arg-type]
    release = threading.Event()
    first = engine.submit(lambda d, job: release.wait(5))
    while not engine.busy:  # the first job is taken off the queue
        time.sleep(0.001)
    waiting = [engine.submit(lambda d, job: "ok") for _ in range(2)]
    with pytest.raises(Busy) as caught:
        engine.submit(lambda d, job: "too many")
    assert caught.value.retry_after >= 1
    release.set()
    assert first.future.result(timeout=5) is True and [w.future.result(timeout=5) for w in waiting] == ["ok", "ok"]
    assert engine.submit(lambda d, job: "again").future.result(timeout=5) == "again"  # room once more
    engine.stop()


def test_aborting_a_waiting_job_means_it_never_runs_and_a_running_one_is_told_to_stop() -> None:
    engine = Engine(double=None, queue_size=4).start()  # type: ignore[arg-type]

    def until_stopped(double, job):
        while not job.should_stop():
            time.sleep(0.001)
        return "stopped"

    running = engine.submit(until_stopped, "long")
    waiting = engine.submit(lambda d, job: "ran")
    while not engine.busy:
        time.sleep(0.001)
    assert engine.abort(waiting.id) and engine.abort("long")
    assert running.future.result(timeout=5) == "stopped"
    with pytest.raises(Aborted):
        waiting.future.result(timeout=5)
    assert engine.abort("no-such-job") is False
    engine.stop()


def test_events_stream_text_then_the_result_and_errors_reach_the_caller() -> None:
    async def scenario() -> tuple[list, str]:
        engine = Engine(double=None, queue_size=2).start()  # type: ignore[arg-type]

        def writes(double, job):
            for piece in ("Она ", "шла ", "домой."):
                job.text(0, piece)
            return "result"

        events = [e async for e in engine.submit(writes).events()]

        def fails(double, job):
            raise ValueError("broken")

        try:
            [e async for e in engine.submit(fails).events()]
            error = ""
        except ValueError as exc:
            error = str(exc)
        engine.stop()
        return events, error

    events, error = asyncio.run(scenario())
    assert "".join(e[2] for e in events[:-1]) == "Она шла домой." and all(e[:2] == ("text", 0) for e in events[:-1])
    assert events[-1] == ("done", "result")
    assert error == "broken"


def test_pieces_queued_while_the_reader_was_busy_come_joined_per_variant() -> None:
    async def scenario() -> list:
        engine = Engine(double=None, queue_size=2).start()  # type: ignore[arg-type]
        release = threading.Event()

        def writes(double, job):
            for piece in ("а", "б", "в"):
                job.text(0, piece)
            job.text(1, "г")
            job.text(0, "д")
            release.wait(5)
            return "result"

        job = engine.submit(writes)
        await asyncio.sleep(0.2)  # the reader is busy elsewhere while all five pieces queue up
        release.set()
        events = [e async for e in job.events()]
        engine.stop()
        return events

    assert asyncio.run(scenario()) == [("text", 0, "абв"), ("text", 1, "г"), ("text", 0, "д"), ("done", "result")]
