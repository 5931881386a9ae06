"""The KoboldAI-compatible API: KoboldAI United's `/api/v1/...` and KoboldCpp's `/api/extra/...`.

Clients such as SillyTavern talk to the double as they would to KoboldCpp:

    POST /api/v1/generate          {"prompt": "...", "max_length": 80, "temperature": 0.7, ...}
                                   → {"results": [{"text": "continuation only", "finish_reason": "length"}]}
    POST /api/extra/generate/stream   the same, as server-sent events `event: message` / `data: {"token": ...}`
    POST /api/extra/abort          {"genkey": "KCPP1234"} stops that request (or, without a key, the running one)

The sampler fields a client sends go on top of the server's preset ([generate] preset);
those the double cannot honour (tfs, top_a, rep_pen_range, mirostat, ...) are validated and
ignored. The originality guard ([generate] guard) stays on for API clients too: what the
double writes through any door never copies a span of the author's books. Every generation
goes into the studio's generation log (source "kobold"). docs/api.md lists every field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from dvoinik import __version__
from dvoinik.generation.decoding import Decoding
from dvoinik.generation.double import Double
from dvoinik.generation.variants import Generation, Variant
from dvoinik.serve.app import Server, server_of
from dvoinik.serve.compat import (
    MAX_STOP_STRINGS,
    RequestModel,
    check_new_tokens,
    check_stops,
    check_text,
    check_variants,
    client_decoding,
    client_voice,
    copy_json,
    invalid,
)
from dvoinik.serve.engine import Aborted, Job
from dvoinik.serve.streaming import aborted_if_client_leaves, job_stream, sse, submit_logged

router = APIRouter(prefix="/api", tags=["koboldai"])

KOBOLDAI_API_VERSION = "1.2.5"  # the KoboldAI United API this follows (stop_sequence, use_default_badwordsids)
KOBOLDCPP_VERSION = "1.80"  # the KoboldCpp whose /api/extra routes this answers; clients gate features on it

Probability = Annotated[float, Field(gt=0, le=1)]
Stop = Annotated[str, Field(max_length=1000)]


class GenerateInput(RequestModel):
    """KoboldAI's generation request. Unknown fields are accepted and ignored, as KoboldCpp does."""

    model_config = ConfigDict(extra="ignore")

    prompt: str
    memory: str = ""  # always at the top of the context, never cut while the prompt has tokens to give
    max_length: Annotated[int, Field(ge=1)] = 80
    max_context_length: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1)] = 1
    temperature: Annotated[float, Field(ge=0, le=10)] | None = None  # 0 = greedy, as in KoboldCpp
    top_p: Probability | None = None
    top_k: Annotated[int, Field(ge=0, le=100_000)] | None = None
    typical: Probability | None = None
    min_p: Annotated[float, Field(ge=0, lt=1)] | None = None
    rep_pen: Annotated[float, Field(ge=1, le=10)] | None = None
    sampler_seed: Annotated[int, Field(ge=-1, lt=2**63)] | None = None  # -1 = a fresh seed, as in KoboldCpp
    stop_sequence: Annotated[list[Stop], Field(max_length=MAX_STOP_STRINGS)] | None = None
    singleline: bool = False
    trim_stop: bool = True
    genkey: Annotated[str, Field(max_length=100)] | None = None
    grammar: str | None = None  # only empty: a grammar would change the answer, and the double has none
    voice: Annotated[str, Field(max_length=1000)] | dict[Annotated[str, Field(max_length=200)], float] | None = None
    # Accepted for compatibility and ignored (validated, so a wrong type is still an error):
    rep_pen_range: Annotated[int, Field(ge=0)] | None = None
    rep_pen_slope: Annotated[float, Field(ge=0)] | None = None
    tfs: Annotated[float, Field(ge=0, le=1)] | None = None
    top_a: Annotated[float, Field(ge=0)] | None = None
    sampler_order: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=32)] | None = None
    mirostat: Annotated[int, Field(ge=0, le=2)] | None = None
    mirostat_tau: Annotated[float, Field(ge=0)] | None = None
    mirostat_eta: Annotated[float, Field(ge=0)] | None = None
    use_default_badwordsids: bool | None = None
    quiet: bool | None = None

    @field_validator("grammar")
    @classmethod
    def _no_grammar(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("grammar-constrained sampling is not supported by this server; leave grammar empty")
        return value


class TokenCountInput(RequestModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str


# ---------------------------------------------------------------- prompt


def token_tail(tokenizer: Any, text: str, keep: int) -> str:
    """The end of `text` that tokenizes to at most `keep` tokens, cut at a token boundary of `text` itself."""
    if keep <= 0 or not text:
        return ""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=bool(tokenizer.is_fast))
    ids = encoded.input_ids
    if len(ids) <= keep:
        return text
    first = len(ids) - keep
    for _ in range(8):  # a cut inside a character can re-tokenize a token longer: step on until it fits
        tail = text[encoded["offset_mapping"][first][0]:] if tokenizer.is_fast else tokenizer.decode(ids[first:])
        if len(tokenizer(tail, add_special_tokens=False).input_ids) <= keep or first >= len(ids) - 1:
            return tail
        first += 1
    return tail


def kobold_prompt(double: Double, memory: str, prompt: str, max_context_length: int | None, max_new_tokens: int) -> str:
    """`memory` + the end of `prompt`, within the client's context and the model's trained length.

    As in KoboldAI, the prompt is cut from its start and memory is kept whole while the
    prompt has tokens to give. The model's own limit mirrors `prompt_ids`, which would
    otherwise cut the memory first.
    """
    rooms = []
    if max_context_length is not None:
        rooms.append(max_context_length - max_new_tokens)
    model = double.trained_length or double.context_length
    if model:
        rooms.append(max(model - max_new_tokens, model // 2))
    if not rooms:
        return memory + prompt
    room = min(rooms)
    memory_tokens = len(double.tokenizer(memory, add_special_tokens=False).input_ids) if memory else 0
    return memory + token_tail(double.tokenizer, prompt, room - memory_tokens)


def kobold_text(double: Double, variant: Variant, stop: tuple[str, ...], trim_stop: bool) -> str:
    """The variant's text; with `trim_stop` off, followed by the stop string that ended it (KoboldCpp's trim_stop)."""
    if trim_stop or variant.finish_reason != "stop" or not stop:
        return variant.text
    full = double.tokenizer.decode(list(variant.ids), skip_special_tokens=True)
    rest = full[len(variant.text):] if full.startswith(variant.text) else ""
    found = next((s for s in stop if rest.startswith(s)), "")
    return variant.text + found


# ---------------------------------------------------------------- requests in flight (genkey)


@dataclass
class Running:
    """A KoboldAI request in flight: its job and the first variant's text so far (for /api/extra/generate/check)."""

    job: Job
    pieces: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def in_flight(request: Request) -> dict[str, Running]:
    """The app's KoboldAI requests in flight, by genkey."""
    return server_of(request).in_flight


def genkey_of(job: Job, body: GenerateInput) -> str:
    # A request without a genkey is still listed (under its job's id), so a key-less check or abort finds it.
    return body.genkey or f"\0{job.id}"


def latest(table: dict[str, Running]) -> Running | None:
    return next(reversed(table.values()), None)


async def body_genkey(request: Request) -> str:
    """The optional genkey of a body that may be empty, or not JSON at all (KoboldCpp tolerates both)."""
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError:
        return ""
    key = data.get("genkey") if isinstance(data, dict) else None
    return key if isinstance(key, str) else ""


# ---------------------------------------------------------------- generation


async def _start(request: Request, body: GenerateInput) -> tuple[Server, Decoding, Job, str]:
    server = server_of(request)
    check_variants(server, body.n, "n")
    check_new_tokens(server, body.max_length, "max_length")
    check_text(server, len(body.prompt) + len(body.memory), "prompt")
    if body.max_context_length is not None and body.max_context_length <= body.max_length:
        raise invalid("max_context_length", f"must be more than max_length ({body.max_length}): the prompt needs "
                                            "room too")
    stop = tuple(body.stop_sequence or ()) + (("\n",) if body.singleline else ())
    check_stops(stop, "stop_sequence")
    seed = None if body.sampler_seed in (None, -1) else body.sampler_seed
    decoding = client_decoding(server, body.temperature, body.max_length, seed, stop, top_p=body.top_p,
                               top_k=body.top_k, typical_p=body.typical, min_p=body.min_p,
                               repetition_penalty=body.rep_pen)
    # A long story takes a while to tokenize: not on the event loop.
    prompt = await run_in_threadpool(kobold_prompt, server.engine.double, body.memory, body.prompt,
                                     body.max_context_length, body.max_length)
    job = submit_logged(server, "kobold", prompt, decoding, body.n, server.generate.guard,
                        voice=client_voice(server, body.voice))
    key = genkey_of(job, body)
    in_flight(request)[key] = Running(job)
    return server, decoding, job, key


def _result(server: Server, generation: Generation, body: GenerateInput) -> dict:
    double = server.engine.double
    return {"results": [
        {"text": kobold_text(double, v, generation.decoding.stop, body.trim_stop), "finish_reason": v.finish_reason,
         "prompt_tokens": generation.prompt_tokens, "completion_tokens": v.new_tokens, "copy": copy_json(v)}
        for v in generation.variants
    ]}


@router.post("/v1/generate")
@router.post("/latest/generate", include_in_schema=False)
async def generate(request: Request, body: GenerateInput) -> dict:
    """The continuation(s) of `memory` + `prompt`, when they are written."""
    server, _, job, key = await _start(request, body)
    table = in_flight(request)
    running = table[key]
    try:
        async with aborted_if_client_leaves(request, job):
            async for event in job.events():
                if event[0] == "text" and event[1] == 0:
                    running.pieces.append(event[2])
                elif event[0] == "done":
                    return _result(server, event[1], body)
    except Aborted:  # aborted while it waited: nothing was written
        return {"results": [{"text": "", "finish_reason": "abort"} for _ in range(body.n)]}
    finally:
        if table.get(key) is running:
            del table[key]
    raise RuntimeError("the generation ended without a result")


@router.post("/extra/generate/stream")
async def generate_stream(request: Request, body: GenerateInput) -> StreamingResponse:
    """KoboldCpp's streaming: `event: message` / `data: {"token": piece, "finish_reason": null}`, the last with the reason."""
    if body.n != 1:
        raise invalid("n", "streaming writes one variant; ask /api/v1/generate for several")
    server, decoding, job, key = await _start(request, body)
    table = in_flight(request)
    running = table[key]

    def encode(event: tuple) -> list[str]:
        if event[0] == "text":
            running.pieces.append(event[2])
            return [sse({"token": event[2], "finish_reason": None}, "message")]
        if event[0] == "done":
            variant = event[1].variants[0]
            final = kobold_text(server.engine.double, variant, decoding.stop, body.trim_stop)
            sent = running.text
            # Beam search streams nothing and trim_stop=false adds the stop string: send what is missing.
            rest = final[len(sent):] if final.startswith(sent) else ""
            return [sse({"token": rest, "finish_reason": variant.finish_reason}, "message")]
        if job.aborted:  # aborted while it waited: it ends as an aborted generation that wrote nothing
            return [sse({"token": "", "finish_reason": "abort"}, "message")]
        return [sse({"detail": {"msg": event[1], "type": "generation_error"}}, "error")]

    async def stream() -> Any:
        try:
            async for chunk in job_stream(job, encode):
                yield chunk
        finally:
            if table.get(key) is running:
                del table[key]

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/extra/generate/check")
@router.post("/extra/generate/check")
async def generate_check(request: Request) -> dict:
    """The text written so far by the request with this genkey (without one: by the latest KoboldAI request)."""
    key = await body_genkey(request) if request.method == "POST" else request.query_params.get("genkey", "")
    table = in_flight(request)
    running = table.get(key) if key else latest(table)
    return {"results": [{"text": running.text if running else ""}]}


@router.post("/extra/abort")
async def abort(request: Request) -> dict:
    """Stop the request with this genkey; without one, the generation that is running (as KoboldCpp does)."""
    key = await body_genkey(request)
    if key:
        running = in_flight(request).get(key)
        stopped = running is not None and not running.job.future.done()
        if stopped:
            running.job.abort()
    else:
        stopped = server_of(request).engine.abort()
    return {"success": "true" if stopped else "false"}


# ---------------------------------------------------------------- information


@router.post("/extra/tokencount")
def token_count(request: Request, body: TokenCountInput) -> dict:
    """The prompt's tokens as the double reads them (no special tokens added, as generation reads prompts)."""
    server = server_of(request)
    check_text(server, len(body.prompt), "prompt")
    ids = server.engine.double.tokenizer(body.prompt, add_special_tokens=False).input_ids if body.prompt else []
    return {"value": len(ids), "ids": ids}


@router.get("/v1/model")
@router.get("/latest/model", include_in_schema=False)
def model(request: Request) -> dict:
    return {"result": f"dvoinik/{server_of(request).engine.double.checkpoint}"}


@router.get("/v1/info/version")
@router.get("/latest/info/version", include_in_schema=False)
def info_version() -> dict:
    return {"result": KOBOLDAI_API_VERSION}


@router.get("/v1/config/max_context_length")
@router.get("/latest/config/max_context_length", include_in_schema=False)
@router.get("/extra/true_max_context_length")
def max_context_length(request: Request) -> dict:
    """Prompt and continuation together: the length the model was trained on (or [serve] context_tokens)."""
    return {"value": server_of(request).context_tokens}


@router.get("/v1/config/max_length")
@router.get("/latest/config/max_length", include_in_schema=False)
def max_length(request: Request) -> dict:
    """The most tokens one request may ask for ([serve] max_new_tokens), as KoboldCpp answers its own limit."""
    return {"value": server_of(request).settings.max_new_tokens}


@router.get("/v1/config/soft_prompts_list")
@router.get("/latest/config/soft_prompts_list", include_in_schema=False)
def soft_prompts() -> dict:
    return {"values": []}


@router.get("/v1/config/soft_prompt")
@router.get("/latest/config/soft_prompt", include_in_schema=False)
def soft_prompt() -> dict:
    return {"value": ""}


@router.get("/extra/version")
def extra_version(request: Request) -> dict:
    """KoboldCpp's capabilities: clients (KoboldAI Lite, SillyTavern) enable the /api/extra routes when they see it."""
    server = server_of(request)
    return {"result": "KoboldCpp", "version": KOBOLDCPP_VERSION, "protected": server.api_key is not None,
            "llm": True, "txt2img": False, "vision": False, "audio": False, "transcribe": False, "multiplayer": False,
            "websearch": False, "tts": False, "embeddings": False, "server": "dvoinik", "server_version": __version__}


@router.get("/extra/perf")
def perf(request: Request) -> dict:
    """What KoboldCpp's perf route tells that the engine knows: the queue, and whether the model is idle."""
    engine = server_of(request).engine
    return {"queue": engine.waiting, "idle": 0 if engine.busy else 1}
