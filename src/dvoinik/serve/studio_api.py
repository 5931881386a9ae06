"""The studio's routes: documents and their history, the context meter, streamed variants, the log, exports.

The contract is in docs/studio-api.md. Handlers translate HTTP to the store, the context
builder and the engine; what they decide is only what to answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from pydantic import ConfigDict, Field

from dvoinik.generation.decoding import PRESET_VALUES, decoding_for, random_seed
from dvoinik.preferences import pairs_of_choice
from dvoinik.serve.app import Server, server_of
from dvoinik.serve.compat import RequestModel, check_new_tokens, check_variants, client_voice
from dvoinik.serve.context import Context, build_context
from dvoinik.serve.store import Document, DocumentState, NotFound, NothingToDo, WorldInfo
from dvoinik.serve.streaming import job_stream, sse, submit_logged
from dvoinik.workspace import PRESETS, CheckSettings

router = APIRouter(prefix="/studio/api", tags=["studio"])

Title = Annotated[str, Field(min_length=1, max_length=200)]
RowId = Annotated[int, FastAPIPath(ge=1, lt=2**63)]  # SQLite's integers: beyond them a lookup would fail, not miss
Short = Annotated[str, Field(max_length=20_000)]
Key = Annotated[str, Field(max_length=200)]


class Strict(RequestModel):
    model_config = ConfigDict(extra="forbid")


class WorldInfoIn(Strict):
    keys: Annotated[list[Key], Field(max_length=50)] = []
    secondary_keys: Annotated[list[Key], Field(max_length=50)] = []
    content: Short = ""
    always: bool = False


class Sampler(Strict):
    """Generation settings; any left out come from the preset (and [generate])."""

    preset: Literal[PRESETS] | None = None  # type: ignore[valid-type]
    n: Annotated[int, Field(ge=1, le=64)] | None = None
    max_new_tokens: Annotated[int, Field(ge=1)] | None = None
    guard: Annotated[int, Field(ge=0, le=1000)] | None = None
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    temperature: Annotated[float, Field(gt=0, le=10)] | None = None
    top_k: Annotated[int, Field(ge=0, le=100_000)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    typical_p: Annotated[float, Field(gt=0, le=1)] | None = None
    min_p: Annotated[float, Field(ge=0, lt=1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    style: Annotated[dict[Key, Annotated[float, Field(ge=0, le=10)]], Field(max_length=20)] | None = None
    voice: Annotated[dict[Key, Annotated[float, Field(ge=0, le=10)]], Field(max_length=50)] | None = None


class DocumentIn(Strict):
    base_version: Annotated[int, Field(ge=1)] | None = None  # refuse a new content if the document moved on
    title: Title | None = None
    text: str | None = None
    memory: Short | None = None
    authors_note: Short | None = None
    note_depth: Annotated[int, Field(ge=0, le=1000)] | None = None
    world_info: Annotated[list[WorldInfoIn], Field(max_length=200)] | None = None
    settings: Sampler | None = None


class NewDocument(Strict):
    title: Title | None = None
    text: str = ""


class Choice(Strict):
    variant: Annotated[int, Field(ge=0, le=63)] | None
    text: str | None = None


def _found(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


def _check_length(server: Server, name: str, text: str | None) -> None:
    if text is not None and len(text) > server.settings.max_text_chars:
        raise HTTPException(413, f"{name} is {len(text)} characters; the server takes at most "
                                 f"{server.settings.max_text_chars} ([serve] max_text_chars)")


# ---------------------------------------------------------------- server


@router.get("/info")
def info(request: Request) -> dict:
    server = server_of(request)
    return {
        "store_id": server.store.id, "checkpoint": server.engine.double.checkpoint,
        "context_tokens": server.context_tokens,
        "max_new_tokens": server.settings.max_new_tokens, "max_variants": server.settings.max_variants,
        "max_text_chars": server.settings.max_text_chars,
        "presets": PRESET_VALUES, "defaults": {"preset": server.generate.preset, "n": min(3, server.settings.max_variants),
                                               "max_new_tokens": min(server.generate.max_new_tokens, server.context_tokens // 2),
                                               "guard": server.generate.guard,
                                               "min_words": server.workspace.check.min_words if server.workspace
                                               else CheckSettings().min_words},
        "styles": list(server.engine.double.styles), "style": server.engine.double.mix, "shareable": not server.loopback, "auth": server.api_key is not None,
        "voices": list(server.engine.double.voices),
        "blind_tests": server.workspace is not None,
    }


# ---------------------------------------------------------------- documents


@router.get("/documents")
def list_documents(request: Request) -> list[dict]:
    return server_of(request).store.documents()


@router.post("/documents", status_code=201)
def create_document(request: Request, body: NewDocument) -> dict:
    server = server_of(request)
    _check_length(server, "text", body.text)
    title = body.title or f"Untitled {len(server.store.documents()) + 1}"
    return server.store.create_document(title, DocumentState(text=body.text)).to_json()


@router.get("/documents/{doc_id}")
def get_document(request: Request, doc_id: RowId) -> dict:
    return _found(server_of(request).store.document, doc_id).to_json()


@router.patch("/documents/{doc_id}")
def update_document(request: Request, doc_id: RowId, body: DocumentIn) -> dict:
    server = server_of(request)
    _check_length(server, "text", body.text)
    current: Document = _found(server.store.document, doc_id)
    given = body.model_dump(exclude_unset=True)
    state = current.state
    for key in ("text", "memory", "authors_note", "note_depth"):
        if key in given and given[key] is not None:
            state = replace(state, **{key: given[key]})
    if body.world_info is not None:
        state = replace(state, world_info=tuple(WorldInfo.from_json(w.model_dump()) for w in body.world_info))
    settings = body.settings.model_dump(exclude_none=True) if body.settings is not None else None
    return server.store.update_document(doc_id, title=body.title, settings=settings,
                                        state=state if state != current.state else None,
                                        base_version=body.base_version).to_json()


@router.post("/documents/{doc_id}/undo")
def undo(request: Request, doc_id: RowId) -> dict:
    return _step(request, doc_id, -1)


@router.post("/documents/{doc_id}/redo")
def redo(request: Request, doc_id: RowId) -> dict:
    return _step(request, doc_id, +1)


def _step(request: Request, doc_id: int, direction: int) -> dict:
    try:
        return _found(server_of(request).store.step, doc_id, direction).to_json()
    except NothingToDo as exc:
        raise HTTPException(409, str(exc)) from None


@router.delete("/documents/{doc_id}", status_code=204)
def delete_document(request: Request, doc_id: RowId) -> Response:
    _found(server_of(request).store.delete_document, doc_id)
    return Response(status_code=204)


@router.get("/documents/{doc_id}/export")
def export_document(request: Request, doc_id: RowId, format: Literal["txt", "md"] = "txt") -> Response:
    doc: Document = _found(server_of(request).store.document, doc_id)
    if format == "md":
        body = f"# {doc.title}\n\n" + doc.state.text.strip() + "\n"
        media = "text/markdown; charset=utf-8"
    else:
        body = doc.state.text.strip() + "\n"
        media = "text/plain; charset=utf-8"
    return Response(body, media_type=media, headers={"Content-Disposition": _attachment(doc.title, format)})


def _attachment(title: str, extension: str) -> str:
    """A Content-Disposition that keeps a Russian title (RFC 5987) with an ASCII fallback."""
    from urllib.parse import quote

    safe = re.sub(r"[^\w\- ]+", "", title, flags=re.UNICODE).strip() or "document"
    ascii_name = re.sub(r"[^A-Za-z0-9\- ]+", "", safe).strip() or "document"
    return f"attachment; filename=\"{ascii_name}.{extension}\"; filename*=UTF-8''{quote(safe)}.{extension}"


# ---------------------------------------------------------------- context and generation


def _context(server: Server, state: DocumentState, max_new_tokens: int) -> Context:
    return build_context(state, server.engine.double.tokenizer, server.context_tokens, max_new_tokens)


@router.get("/documents/{doc_id}/context")
def context_meter(request: Request, doc_id: RowId, max_new_tokens: Annotated[int | None, Query(ge=1)] = None) -> dict:
    server = server_of(request)
    doc: Document = _found(server.store.document, doc_id)
    wanted = max_new_tokens or doc.settings.get("max_new_tokens") or server.generate.max_new_tokens
    return _context(server, doc.state, min(wanted, server.context_tokens // 2)).to_json()


@router.post("/documents/{doc_id}/generate")
async def generate_variants(request: Request, doc_id: RowId, body: Sampler) -> StreamingResponse:
    server = server_of(request)
    doc: Document = _found(server.store.document, doc_id)
    n = body.n or server.generate.variants
    check_variants(server, n, "n")
    max_new = body.max_new_tokens or server.generate.max_new_tokens
    check_new_tokens(server, max_new, "max_new_tokens")
    if body.style and not server.engine.double.styles:
        raise HTTPException(422, "this server serves one run; start it with --style RUN=W,... to mix LoRA adapters")
    unknown = sorted(set(body.style or {}) - set(server.engine.double.styles))
    if unknown:
        raise HTTPException(422, f"style {', '.join(unknown)}: not among the loaded runs "
                                 f"({', '.join(server.engine.double.styles)})")
    voice = client_voice(server, body.voice)  # a voice the double lacks: 422 before anything is queued
    seed = body.seed if body.seed is not None else random_seed()
    decoding = decoding_for(body.preset or server.generate.preset, max_new_tokens=max_new, seed=seed,
                            **body.model_dump(include={"temperature", "top_k", "top_p", "typical_p", "min_p",
                                                       "repetition_penalty"}))
    guard = server.generate.guard if body.guard is None else body.guard
    context = await run_in_threadpool(_context, server, doc.state, max_new)  # tokenizing a novel takes a moment
    settings = {**body.model_dump(exclude_none=True), "preset": decoding.preset, "n": n, "max_new_tokens": max_new,
                "guard": guard}
    # The job's id is the log's, so the page aborts and picks by the one id it was given.
    job = submit_logged(server, "studio", context.prompt, decoding, n, guard, document_id=doc_id, settings=settings,
                        style=body.style, voice=voice)

    def encode(event: tuple) -> list[str]:
        if event[0] == "text":
            return [sse({"variant": event[1], "text": event[2]}, "text")]
        if event[0] == "done":
            return [sse({"generation_id": job.id, "variants": event[1].to_json()["variants"]}, "done")]
        return [sse({"msg": event[1]}, "error")]

    async def stream() -> Any:
        yield sse({"generation_id": job.id, "seed": seed, "checkpoint": server.engine.double.checkpoint,
                   "context": context.to_json()}, "start")
        async for chunk in job_stream(job, encode):
            yield chunk

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/generations/{generation_id}/abort")
def abort_generation(request: Request, generation_id: str) -> dict:
    return {"aborted": server_of(request).engine.abort(generation_id)}


@router.post("/generations/{generation_id}/choose")
def choose(request: Request, generation_id: str, body: Choice) -> dict:
    server = server_of(request)
    entry = _found(server.store.generation, generation_id)
    if entry.document_id is None:
        raise HTTPException(409, "this generation belongs to no document")
    _check_length(server, "text", body.text)
    if body.variant is not None and not 0 <= body.variant < len(entry.variants):
        raise HTTPException(422, f"variant {body.variant}: this generation has {len(entry.variants)}")
    text = None if body.variant is None else body.text if body.text is not None else entry.variants[body.variant]["text"]
    # Made once, with the append in the same transaction: a retried request changes nothing (409 if it differs).
    doc, _ = _found(server.store.choose, generation_id, body.variant, text)
    return doc.to_json()


@router.get("/generations")
def generation_log(request: Request, document: Annotated[int | None, Query(ge=1, lt=2**63)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict]:
    return [g.to_json() for g in server_of(request).store.generations(document, limit)]


@router.get("/export/preferences.jsonl")
def export_preferences(request: Request) -> Response:
    """One line per (chosen, rejected) pair, for preference training (DPO and its kin)."""
    lines = []
    for entry in reversed(server_of(request).store.generations(limit=1_000_000, chosen_only=True)):
        if entry.chosen is not None and 0 <= entry.chosen < len(entry.variants):
            lines += [json.dumps(pair.to_json(), ensure_ascii=False) for pair in pairs_of_choice(
                entry.prompt, entry.variants, entry.chosen, entry.chosen_text, entry.id, entry.checkpoint, entry.seed)]
    return Response("".join(line + "\n" for line in lines), media_type="application/x-ndjson; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="preferences.jsonl"'})
