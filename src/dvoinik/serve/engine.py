"""One model, one worker thread, a bounded queue: how every request of the server reaches the double.

    engine = Engine(double, queue_size=8)
    job = engine.submit(lambda double, job: generate(double, prompt, decoding, on_text=job.text,
                                                     should_stop=job.should_stop))
    async for event in job.events():   # ("text", variant, piece) ... then ("done", result)
        ...

Work runs one job at a time on a single thread, because one model in memory serves one
batch at a time; a job asks for N variants as one batch. When `queue_size` jobs are
already waiting, `submit` raises `Busy` with a Retry-After estimate, and the API answers
503 at once instead of holding the connection. A job can be aborted while it waits (it
never starts) or while it runs (generation ends after the current step).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from dvoinik.generation.double import Double

Work = Callable[[Double, "Job"], Any]


class Busy(Exception):
    """The queue is full; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy: try again in {retry_after} s")
        self.retry_after = retry_after


class Aborted(Exception):
    """The job was aborted before it started."""


class Job:
    """A piece of work for the model: its result, its abort flag, and the events it streams."""

    def __init__(self, job_id: str, work: Work, loop: asyncio.AbstractEventLoop | None) -> None:
        self.id = job_id
        self.work = work
        self.future: Future = Future()
        self._abort = threading.Event()
        self._loop = loop
        self._events: asyncio.Queue | None = asyncio.Queue() if loop is not None else None

    # -- from the worker thread

    def should_stop(self) -> bool:
        # A cancelled future: whoever waited for the result has gone (a closed stream), so stop writing for nobody.
        return self._abort.is_set() or self.future.cancelled()

    def text(self, variant: int, piece: str) -> None:
        """Stream a piece of a variant's text to whoever iterates `events()`."""
        self._emit(("text", variant, piece))

    def _emit(self, event: tuple) -> None:
        if self._loop is not None and self._events is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)

    # -- from anywhere

    def abort(self) -> None:
        self._abort.set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    async def result(self) -> Any:
        return await asyncio.wrap_future(self.future)

    async def events(self) -> AsyncIterator[tuple]:
        """("text", variant, piece) while the job runs, then ("done", result); an error is raised.

        The end arrives through the same queue as the text, after the last piece: leaving
        early touches nothing but this iterator, and the job's future (and whoever logs
        from it) still gets its result. Pieces of one variant that queued up while the
        consumer was busy come as one piece: fewer, larger events when the model outruns it.
        """
        if self._events is None:
            raise RuntimeError("events() needs a job submitted from an event loop")
        while True:
            batch = [await self._events.get()]
            while not self._events.empty():
                batch.append(self._events.get_nowait())
            for event in _joined(batch):
                if event[0] != _END:
                    yield event
                    continue
                error = self.future.exception()
                if error is not None:
                    raise error
                yield ("done", self.future.result())
                return

    def _settle(self, result: Any = None, exception: BaseException | None = None) -> None:
        """Hand the outcome to the future (unless a waiter cancelled it), then end the event stream."""
        try:
            if exception is not None:
                self.future.set_exception(exception)
            else:
                self.future.set_result(result)
        except InvalidStateError:  # cancelled by its waiter: the model's thread must outlive any request
            pass
        self._emit((_END,))


_END = "_end"


def _joined(events: list[tuple]) -> list[tuple]:
    """Consecutive text pieces of the same variant joined into one."""
    out: list[tuple] = []
    for event in events:
        if out and event[0] == "text" and out[-1][0] == "text" and out[-1][1] == event[1]:
            out[-1] = ("text", event[1], out[-1][2] + event[2])
        else:
            out.append(event)
    return out


class Engine:
    """Runs jobs on the double, one at a time, from a queue of at most `queue_size` waiting jobs."""

    def __init__(self, double: Double, queue_size: int = 8) -> None:
        self.double = double
        self.queue_size = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # waiting and running, by id
        self._running: Job | None = None
        self._seconds = 5.0  # running mean of a job's duration, for Retry-After
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> Engine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="dvoinik-model", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Abort whatever runs or waits and end the worker."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.abort()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    # -- jobs

    def submit(self, work: Work, job_id: str | None = None) -> Job:
        """Queue `work(double, job)` (under `job_id`, to abort it by that name); raise Busy when the queue is full."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        job = Job(job_id or f"job-{next(self._ids)}", work, loop)
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise Busy(self.retry_after()) from None
            self._jobs[job.id] = job
        return job

    def abort(self, job_id: str | None = None) -> bool:
        """Abort one job (by id), or the running one; whether there was one to abort."""
        with self._lock:
            job = self._jobs.get(job_id) if job_id is not None else self._running
        if job is None:
            return False
        job.abort()
        return True

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        return self._running is not None

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained: the jobs waiting and running times a job's mean duration.

        (A place frees sooner, but every refused client is retrying for it; pointing them
        past the backlog spreads the retries instead of refusing most of them again.)
        """
        return max(1, math.ceil(self._seconds * (self._queue.qsize() + 1)))

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._running = job
            started = time.perf_counter()
            try:
                if job.aborted:
                    raise Aborted(f"{job.id} was aborted before it started")
                result = job.work(self.double, job)
            except BaseException as exc:  # handed to the waiting request, which decides what to answer
                job._settle(exception=exc)
            else:
                job._settle(result)
            finally:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - started)
                with self._lock:
                    self._running = None
                    self._jobs.pop(job.id, None)

