"""Blind-test routes: the writer creates tests and reads results; readers take a test through its own link.

A test is sealed while it is open: nobody is shown which passages are the writer's, nor
any score (a score per submission would let one reader find the answers by resubmitting
under new names), and its random seed (which decides the answers) stays on the server.
Readers get a receipt for their answers. When the writer closes the test, for good, it
takes no more answers, and the scores are shown: to the writer with every answer, and
to each reader by their receipt. A reader at the writer's own computer can reach the
studio of a keyless server, but an open test's answers are nowhere to be read there either.
"""

from __future__ import annotations

import secrets
import unicodedata
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import ConfigDict, Field, field_validator

from dvoinik.runs import RunError, find_run, run_token_set
from dvoinik.serve import blind
from dvoinik.serve.app import SECURITY_HEADERS, STATIC, Server, server_of
from dvoinik.serve.compat import RequestModel
from dvoinik.serve.engine import Job
from dvoinik.serve.store import BlindAnswer, BlindTest, NotFound, TooMany, iso
from dvoinik.serve.studio_api import RowId

router = APIRouter()


class NewTest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    passages: Annotated[int, Field(ge=2, le=200)] = 10
    kind: Literal["single", "pairs", "both"] = "both"
    seed: Annotated[int, Field(ge=0, lt=2**31)] | None = None  # None: a random one, kept on the server


class Answer(RequestModel):
    index: Annotated[int, Field(ge=0)]
    answer: Literal["writer", "double", "a", "b"]


class Answers(RequestModel):
    model_config = ConfigDict(extra="forbid")

    reader: Annotated[str, Field(min_length=1, max_length=100)]
    answers: Annotated[list[Answer], Field(min_length=1, max_length=400)]

    @field_validator("reader")
    @classmethod
    def _a_name(cls, value: str) -> str:
        name = " ".join(value.split())
        if not name:
            raise ValueError("a name is needed: it cannot be only spaces")
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
            raise ValueError("a name cannot hold control characters")
        return name


def share_url(request: Request, test: BlindTest) -> str:
    return str(request.base_url).rstrip("/") + f"/blind/{test.token}"


def _summary(request: Request, server: Server, test: BlindTest, with_items: bool = False) -> dict:
    """A test as the writer sees it: while open, how many have answered; once closed, the answers and the scores."""
    out: dict[str, Any] = {"id": test.id, "title": test.title, "kind": test.kind, "checkpoint": test.checkpoint,
                           "created_at": iso(test.created_at), "items": len(test.items), "url": share_url(request, test),
                           "status": "closed" if test.closed else "open",
                           "closed_at": iso(test.closed_at) if test.closed_at else None,
                           "readers": server.store.blind_readers(test.id),
                           "results": blind.results(test.items, server.store.answers(test.id)) if test.closed else None}
    if test.closed:
        out["seed"] = test.seed
    if with_items:
        out["items"] = test.items if test.closed else [blind.public_item(i) for i in test.items]
    return out


def _overall(server: Server, test: BlindTest) -> dict:
    """A closed test's scores for its readers: every answer together, and per kind (no reader named)."""
    results = blind.results(test.items, server.store.answers(test.id))
    return {key: results[key] for key in ("overall", "single", "pairs")}


def _test(server: Server, test_id: int | None = None, token: str | None = None) -> BlindTest:
    try:
        return server.store.blind_test(test_id, token)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


# ---------------------------------------------------------------- the writer's side


@router.post("/studio/api/blind-tests", status_code=201)
async def create_test(request: Request, body: NewTest) -> dict:
    server = server_of(request)
    if server.workspace is None:
        raise HTTPException(409, "blind tests need the workspace's held-out texts; this server has none")
    try:
        token_set = run_token_set(server.workspace, find_run(server.workspace, server.run))
    except RunError as exc:
        raise HTTPException(409, str(exc)) from None
    preset, guard = server.generate.preset, server.generate.guard
    # Which passages are the writer's follows from the seed: a random one per test, never shown to a reader.
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)

    def work(double: Any, job: Job) -> blind.Material:
        return blind.blind_material(double, token_set, body.passages, preset, guard, seed, job.should_stop)

    material: blind.Material = await server.engine.submit(work).result()
    if len(material.openings) < 2:
        raise HTTPException(409, "the target author's held-out works are too short for a blind test "
                                 f"(found {len(material.openings)} passage(s))")
    items = blind.make_items(material.openings, material.writer, material.double, body.kind, seed)
    title = body.title or f"{server.workspace.target_author or server.workspace.name}: {len(items)}"
    test = server.store.create_blind_test(title, body.kind, server.engine.double.checkpoint, items, seed)
    return _summary(request, server, test, with_items=True)


@router.get("/studio/api/blind-tests")
def list_tests(request: Request) -> list[dict]:
    server = server_of(request)
    return [_summary(request, server, t) for t in server.store.blind_tests()]


@router.get("/studio/api/blind-tests/{test_id}")
def get_test(request: Request, test_id: RowId) -> dict:
    server = server_of(request)
    return _summary(request, server, _test(server, test_id), with_items=True)


@router.post("/studio/api/blind-tests/{test_id}/close")
def close_test(request: Request, test_id: RowId) -> dict:
    """Close the test for good: no more answers; the scores (and which passage was whose) are shown."""
    server = server_of(request)
    try:
        test = server.store.close_blind_test(test_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return _summary(request, server, test, with_items=True)


@router.delete("/studio/api/blind-tests/{test_id}", status_code=204)
def delete_test(request: Request, test_id: RowId) -> Response:
    try:
        server_of(request).store.delete_blind_test(test_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(status_code=204)


# ---------------------------------------------------------------- the reader's side (the token is the permission)


@router.get("/blind/{token}", include_in_schema=False)
def reader_page(request: Request, token: str) -> FileResponse:
    test = _test(server_of(request), token=token)
    # The reader's page may talk to its own test only: not a way into the studio's API, even for a script in it.
    own = str(request.base_url).rstrip("/") + f"/blind/{test.token}/"
    policy = SECURITY_HEADERS["Content-Security-Policy"].replace("connect-src 'self'", f"connect-src {own}")
    return FileResponse(STATIC / "blind.html", headers={"Cache-Control": "no-cache", "Content-Security-Policy": policy})


@router.get("/blind/{token}/api")
def reader_items(request: Request, token: str) -> dict:
    server = server_of(request)
    test = _test(server, token=token)
    return {"title": test.title, "kind": test.kind, "items": [blind.public_item(i) for i in test.items],
            "closed": test.closed, "results": _overall(server, test) if test.closed else None}


@router.get("/blind/{token}/api/receipts/{receipt}")
def reader_result(request: Request, token: str, receipt: str) -> dict:
    """A reader's own score, by the receipt their answers got: null until the writer closes the test."""
    server = server_of(request)
    test = _test(server, token=token)
    try:
        reader = server.store.blind_receipt(test.id, receipt)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    marks = [a.correct for a in server.store.answers(test.id) if a.reader == reader]
    return {"reader": reader, "closed": test.closed, "score": blind.score(marks).to_json() if test.closed else None}


@router.post("/blind/{token}/api/answers", status_code=201)
def reader_answers(request: Request, token: str, body: Answers) -> dict:
    server = server_of(request)
    test = _test(server, token=token)
    if test.closed:
        raise HTTPException(409, "this test is closed: its author takes no more answers")
    by_index = {item["index"]: item for item in test.items}
    marked: list[BlindAnswer] = []
    for answer in body.answers:
        item = by_index.get(answer.index)
        if item is None:
            raise HTTPException(422, f"item {answer.index}: this test has items 0 to {len(test.items) - 1}")
        if answer.answer not in blind.valid_answers(item):
            raise HTTPException(422, f"item {answer.index} is a {item['kind']}: answer one of "
                                     f"{', '.join(blind.valid_answers(item))}")
        marked.append(BlindAnswer(body.reader, answer.index, answer.answer, blind.is_correct(item, answer.answer)))
    if len({a.item for a in marked}) != len(marked):
        raise HTTPException(422, "an item is answered twice")
    if len(marked) != len(test.items):
        raise HTTPException(422, f"answer every item: {len(marked)} of {len(test.items)} answered")
    address = request.client.host if request.client else ""
    try:  # a reader's first answers are final (409 after); limits per test and per address (429)
        receipt = server.store.add_answers(test.id, marked, address, server.settings.blind_readers,
                                           server.settings.blind_readers_per_address)
    except TooMany as exc:
        raise HTTPException(429, str(exc)) from None
    # No score, not even the reader's own, while the test is open: scores of answers a reader can vary
    # under new names would give the answers away. The receipt shows it once the writer closes the test.
    return {"reader": body.reader, "receipt": receipt, "closed": False}
