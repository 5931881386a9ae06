"""Blind-test routes: the writer creates tests and reads results; readers take a test through its own link."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from dvoinik.runs import RunError, find_run, run_token_set
from dvoinik.serve import blind
from dvoinik.serve.app import STATIC, Server, server_of
from dvoinik.serve.engine import Job
from dvoinik.serve.store import BlindAnswer, BlindTest, NotFound, iso
from dvoinik.serve.studio_api import RowId

router = APIRouter()


class NewTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    passages: Annotated[int, Field(ge=2, le=200)] = 10
    kind: Literal["single", "pairs", "both"] = "both"
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0


class Answer(BaseModel):
    index: Annotated[int, Field(ge=0)]
    answer: Literal["writer", "double", "a", "b"]


class Answers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reader: Annotated[str, Field(min_length=1, max_length=100)]
    answers: Annotated[list[Answer], Field(min_length=1, max_length=400)]


def share_url(request: Request, test: BlindTest) -> str:
    return str(request.base_url).rstrip("/") + f"/blind/{test.token}"


def _summary(request: Request, server: Server, test: BlindTest, with_items: bool = False) -> dict:
    out: dict[str, Any] = {"id": test.id, "title": test.title, "kind": test.kind, "checkpoint": test.checkpoint,
                           "created_at": iso(test.created_at), "items": len(test.items), "url": share_url(request, test),
                           "results": blind.results(test.items, server.store.answers(test.id))}
    if with_items:
        out["items"] = test.items
    return out


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

    def work(double: Any, job: Job) -> blind.Material:
        return blind.blind_material(double, token_set, body.passages, preset, guard, body.seed, job.should_stop)

    material: blind.Material = await server.engine.submit(work).result()
    if len(material.openings) < 2:
        raise HTTPException(409, "the target author's held-out works are too short for a blind test "
                                 f"(found {len(material.openings)} passage(s))")
    items = blind.make_items(material.openings, material.writer, material.double, body.kind, body.seed)
    title = body.title or f"{server.workspace.target_author or server.workspace.name}: {len(items)}"
    test = server.store.create_blind_test(title, body.kind, server.engine.double.checkpoint, items)
    return _summary(request, server, test, with_items=True)


@router.get("/studio/api/blind-tests")
def list_tests(request: Request) -> list[dict]:
    server = server_of(request)
    return [_summary(request, server, t) for t in server.store.blind_tests()]


@router.get("/studio/api/blind-tests/{test_id}")
def get_test(request: Request, test_id: RowId) -> dict:
    server = server_of(request)
    return _summary(request, server, _test(server, test_id), with_items=True)


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
    _test(server_of(request), token=token)
    return FileResponse(STATIC / "blind.html", headers={"Cache-Control": "no-cache"})


@router.get("/blind/{token}/api")
def reader_items(request: Request, token: str) -> dict:
    test = _test(server_of(request), token=token)
    return {"title": test.title, "kind": test.kind, "items": [blind.public_item(i) for i in test.items]}


@router.post("/blind/{token}/api/answers")
def reader_answers(request: Request, token: str, body: Answers) -> dict:
    server = server_of(request)
    test = _test(server, token=token)
    by_index = {item["index"]: item for item in test.items}
    marked: list[BlindAnswer] = []
    for answer in body.answers:
        item = by_index.get(answer.index)
        if item is None:
            raise HTTPException(422, f"item {answer.index}: this test has items 0 to {len(test.items) - 1}")
        if answer.answer not in blind.valid_answers(item):
            raise HTTPException(422, f"item {answer.index} is a {item['kind']}: answer one of "
                                     f"{', '.join(blind.valid_answers(item))}")
        marked.append(BlindAnswer(body.reader.strip(), answer.index, answer.answer, blind.is_correct(item, answer.answer)))
    if len({a.item for a in marked}) != len(marked):
        raise HTTPException(422, "an item is answered twice")
    if len(marked) != len(test.items):
        raise HTTPException(422, f"answer every item: {len(marked)} of {len(test.items)} answered")
    server.store.add_answers(test.id, marked)  # a reader's first answers are final (409 after)
    # The score only: which passages were the writer's stays hidden, so the link can go on to other readers.
    return {"reader": body.reader.strip(), "score": blind.score([a.correct for a in marked]).to_json()}
