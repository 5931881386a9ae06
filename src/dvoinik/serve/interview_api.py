"""The studio's interviews (the «Интервью» tab): conversations with the double, each in its prose frame.

    GET    /studio/api/interview/frames           the workspace's frame and the built-in ones
    GET    /studio/api/interviews                 the list
    POST   /studio/api/interviews                 a new interview (title, frame)
    GET    /studio/api/interviews/{id}            with its turns
    PATCH  /studio/api/interviews/{id}            title, frame, settings (voice, sampler)
    DELETE /studio/api/interviews/{id}
    POST   /studio/api/interviews/{id}/undo       take back the last turn
    POST   /studio/api/interviews/{id}/ask        {"question": ...} → SSE: start, text…, done (the turn kept), error

An answer is a generation like any other: it goes through the engine's queue, the
originality guard and the copy score, and into the generation log (source "interview").
The turn is kept in the store when the answer is written, even if the page that asked
is gone by then. docs/studio-api.md has the contract.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as FastAPIPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import ConfigDict, Field

from dvoinik.generation.decoding import GenerationError, decoding_for, random_seed
from dvoinik.generation.interview import (
    FRAMES,
    Frame,
    Turn,
    answer_decoding,
    answer_length,
    builtin_frames,
    context_room,
    framed_prompt,
    trimmed_answer,
)
from dvoinik.generation.variants import Generation
from dvoinik.serve.app import Server, server_of
from dvoinik.serve.compat import RequestModel, check_new_tokens, client_voice, copy_json
from dvoinik.serve.store import NotFound, NothingToDo
from dvoinik.serve.streaming import job_stream, sse, submit_logged
from dvoinik.workspace import PRESETS, InterviewSettings

router = APIRouter(prefix="/studio/api", tags=["interview"])

RowId = Annotated[int, FastAPIPath(ge=1, lt=2**63)]
Key = Annotated[str, Field(max_length=200)]


class Strict(RequestModel):  # no lone surrogate in any text field (422 naming it), as in every API
    model_config = ConfigDict(extra="forbid")


class FrameIn(Strict):
    name: Annotated[str, Field(max_length=40)] = "custom"
    question: Annotated[str, Field(min_length=1, max_length=2000)]
    answer: Annotated[str, Field(max_length=2000)] = ""
    end: Annotated[str, Field(min_length=1, max_length=200)]
    preamble: Annotated[str, Field(max_length=20_000)] = ""


class AskSettings(Strict):
    """How the double answers; any left out come from the preset and [interview]."""

    preset: Literal[PRESETS] | None = None  # type: ignore[valid-type]
    max_new_tokens: Annotated[int, Field(ge=1)] | None = None
    guard: Annotated[int, Field(ge=0, le=1000)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    temperature: Annotated[float, Field(gt=0, le=10)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    voice: Annotated[dict[Key, Annotated[float, Field(ge=0, le=10)]], Field(max_length=50)] | None = None


class InterviewIn(Strict):
    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    frame: FrameIn | None = None
    settings: AskSettings | None = None


class Question(AskSettings):
    question: Annotated[str, Field(min_length=1, max_length=20_000)]


def _found(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


def server_frame(server: Server) -> Frame:
    """The frame new interviews start with: the workspace's ([interview], or detected from the corpus)."""
    if server.interview is not None:
        return server.interview
    return builtin_frames(server.workspace.language if server.workspace else "ru")["dialogue"]


def interview_settings(server: Server) -> InterviewSettings:
    return server.workspace.interview if server.workspace is not None else InterviewSettings()


def _frame(value: FrameIn) -> dict:
    try:
        return Frame(**value.model_dump()).to_json()
    except GenerationError as exc:
        raise HTTPException(422, str(exc)) from None


# ---------------------------------------------------------------- interviews


@router.get("/interview/frames")
def frames(request: Request) -> dict:
    server = server_of(request)
    language = server.workspace.language if server.workspace else "ru"
    return {"default": server_frame(server).to_json(), "names": list(FRAMES),
            "builtin": {name: frame.to_json() for name, frame in builtin_frames(language).items()}}


@router.get("/interviews")
def list_interviews(request: Request) -> list[dict]:
    return server_of(request).store.interviews.list()


@router.post("/interviews", status_code=201)
def create_interview(request: Request, body: InterviewIn) -> dict:
    server = server_of(request)
    log = server.store.interviews
    frame = _frame(body.frame) if body.frame else server_frame(server).to_json()
    title = body.title or f"Interview {len(log.list()) + 1}"
    settings = body.settings.model_dump(exclude_none=True) if body.settings else {}
    return log.create(title, frame, settings).to_json()


@router.get("/interviews/{interview_id}")
def get_interview(request: Request, interview_id: RowId) -> dict:
    return _found(server_of(request).store.interviews.get, interview_id).to_json()


@router.patch("/interviews/{interview_id}")
def update_interview(request: Request, interview_id: RowId, body: InterviewIn) -> dict:
    log = server_of(request).store.interviews
    settings = body.settings.model_dump(exclude_none=True) if body.settings is not None else None
    frame = _frame(body.frame) if body.frame is not None else None
    return _found(lambda: log.update(interview_id, title=body.title, frame=frame, settings=settings)).to_json()


@router.delete("/interviews/{interview_id}", status_code=204)
def delete_interview(request: Request, interview_id: RowId) -> Response:
    _found(server_of(request).store.interviews.delete, interview_id)
    return Response(status_code=204)


@router.post("/interviews/{interview_id}/undo")
def take_back(request: Request, interview_id: RowId) -> dict:
    try:
        return _found(server_of(request).store.interviews.remove_last_turn, interview_id).to_json()
    except NothingToDo as exc:
        raise HTTPException(409, str(exc)) from None


# ---------------------------------------------------------------- asking


@router.post("/interviews/{interview_id}/ask")
async def ask(request: Request, interview_id: RowId, body: Question) -> StreamingResponse:
    server = server_of(request)
    interview = _found(server.store.interviews.get, interview_id)
    frame = Frame.from_json(interview.frame)
    chosen = {**interview.settings, **body.model_dump(exclude_none=True, exclude={"question"})}
    max_new = chosen.get("max_new_tokens") or answer_length(server.engine.double,
                                                            interview_settings(server).max_new_tokens)
    check_new_tokens(server, max_new, "max_new_tokens")
    voice = client_voice(server, chosen.get("voice"))
    seed = chosen.get("seed", random_seed())
    decoding = answer_decoding(frame, decoding_for(
        chosen.get("preset") or server.generate.preset, max_new_tokens=max_new, seed=seed,
        **{key: chosen.get(key) for key in ("temperature", "top_p", "repetition_penalty")}))
    guard = chosen.get("guard", server.generate.guard)
    turns = [Turn(t.question, t.answer) for t in interview.turns]
    double = server.engine.double
    prompt = await run_in_threadpool(framed_prompt, frame, turns, body.question, double.tokenizer,
                                     context_room(double, max_new))
    settings = {**chosen, "max_new_tokens": max_new, "guard": guard, "interview": interview_id}
    job = submit_logged(server, "interview", prompt.text, decoding, 1, guard, settings=settings, voice=voice,
                        frame=frame)
    kept: dict[str, Any] = {}

    def keep(future: Any) -> None:  # in the model's thread, before the stream hears "done"
        if future.cancelled() or future.exception() is not None:
            return
        variant = future.result().variants[0]
        answer = trimmed_answer(variant.text, variant.finish_reason)
        if answer:
            try:
                kept["turn"] = server.store.interviews.add_turn(interview_id, body.question, answer,
                                                                variant.finish_reason, job.id, copy_json(variant))
            except NotFound:
                pass  # deleted while the double was answering

    job.future.add_done_callback(keep)

    def encode(event: tuple) -> list[str]:
        if event[0] == "text":
            return [sse({"text": event[2]}, "text")]
        if event[0] == "done":
            result: Generation = event[1]
            turn = kept.get("turn")
            return [sse({"generation_id": job.id, "turn": turn.to_json() if turn else None,
                         "finish_reason": result.variants[0].finish_reason}, "done")]
        return [sse({"msg": event[1]}, "error")]

    async def stream() -> Any:
        yield sse({"generation_id": job.id, "seed": seed, "checkpoint": double.checkpoint, "prompt": prompt.text,
                   "turns_kept": prompt.turns_kept, "turns_dropped": prompt.turns_dropped}, "start")
        async for chunk in job_stream(job, encode):
            yield chunk

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
