"""The OpenAI-compatible API: `/v1/models`, `/v1/completions` and `/v1/chat/completions`, streamed or not.

    client = OpenAI(base_url="http://127.0.0.1:5001/v1", api_key="KEY or anything")
    client.completions.create(model="double", prompt="В то утро она", max_tokens=60, n=3, seed=7)

The double is a prose model, not a chat model: a chat request becomes an interview in the
author's own prose frame (generation/interview.py: system messages open it, user messages
are the questions, assistant messages the double's earlier answers), and the reply is the
double's answer, cut where its turn ends. Settings go on top of the server's preset
([generate] preset): `temperature` 0 is greedy, any other temperature samples. The
originality guard ([generate] guard) stays on, and every generation goes into the studio's
generation log (source "openai"). A field that would change the answer and
cannot be honoured (suffix, best_of, logit_bias, frequency and presence penalties, tools,
several prompts) is refused with 400 rather than silently ignored; logprobs, which add to the
answer without changing it, are ignored (null). docs/api.md has the details.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field

from dvoinik.generation.decoding import Decoding, GenerationError
from dvoinik.generation.interview import Frame, Turn, answer_decoding, context_room, framed_prompt
from dvoinik.generation.variants import Generation
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
from dvoinik.serve.engine import Job
from dvoinik.serve.interview_api import server_frame
from dvoinik.serve.streaming import aborted_if_client_leaves, job_stream, sse, submit_logged

router = APIRouter(prefix="/v1", tags=["openai"])

COMPLETION_DEFAULT_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions
Stop = Annotated[str, Field(max_length=1000)]
Penalty = Annotated[float, Field(ge=-2, le=2)]


class StreamOptions(RequestModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class Sampling(RequestModel):
    """What completions and chat completions share. Unknown fields are ignored (clients send many)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None  # any name is accepted: the server has one double ("dvoinik:<voice>" picks a voice)
    voice: Annotated[str, Field(max_length=1000)] | dict[Annotated[str, Field(max_length=200)], float] | None = None
    n: Annotated[int, Field(ge=1)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOP_STRINGS)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), lt=2**64)] | None = None
    temperature: Annotated[float, Field(ge=0, le=10)] | None = None  # OpenAI's own API stops at 2
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    # Beyond OpenAI's fields (the openai client sends them with extra_body=; SillyTavern sends them as they are):
    top_k: Annotated[int, Field(ge=0, le=100_000)] | None = None
    min_p: Annotated[float, Field(ge=0, lt=1)] | None = None
    typical_p: Annotated[float, Field(gt=0, le=1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0, le=10)] | None = None
    # Refused unless neutral: ignoring them would change the answer, and the double has no such thing.
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: Any = None
    grammar: str | None = None  # KoboldCpp's, which SillyTavern sends here
    # Accepted and ignored: they ask for more than the text, and the text is the same without them.
    logprobs: Any = None
    top_logprobs: int | None = None
    user: str | None = None

    def refuse_unsupported(self) -> None:
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(self, name):
                raise invalid(name, "not supported by this server; use repetition_penalty (e.g. 1.15) instead")
        if self.logit_bias:
            raise invalid("logit_bias", "not supported by this server")
        if self.grammar:
            raise invalid("grammar", "grammar-constrained sampling is not supported by this server")

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionInput(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1)] | None = None


class TextPart(RequestModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class Message(RequestModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatInput(Sampling):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChatConversation:
    """A chat as an interview: what opens it, the turns so far, the question asked, the answer's start (if any)."""

    opening: str
    turns: list[Turn]
    question: str
    prefill: str = ""


def chat_conversation(messages: list[Message]) -> ChatConversation:
    """system and developer messages open the conversation; each user message asks (consecutive ones are one
    question); each assistant message answers the question before it. A chat that ends with an assistant
    message asks for that answer to be continued."""
    opening: list[str] = []
    turns: list[Turn] = []
    asking: list[str] = []
    for message in messages:
        text = message.text().strip()
        if not text:
            continue
        if message.role in ("system", "developer"):
            opening.append(text)
        elif message.role == "user":
            asking.append(text)
        elif asking:
            turns.append(Turn(" ".join(asking), text))
            asking = []
        else:  # an answer to no question (a greeting first): it sets the scene
            opening.append(text)
    if asking:
        return ChatConversation("\n\n".join(opening), turns, " ".join(asking))
    if not turns:
        raise invalid("messages", "a chat needs a user message: the double answers questions")
    last = turns.pop()
    return ChatConversation("\n\n".join(opening), turns, last.question, last.answer)


def chat_prompt(server: Server, conversation: ChatConversation, max_new_tokens: int) -> tuple[str, Frame]:
    """The framed prompt of a chat (the frame's preamble, then the chat's opening), and the frame."""
    frame = server_frame(server)
    opening = "\n\n".join(part for part in (frame.preamble.strip(), conversation.opening) if part)
    frame = replace(frame, preamble=opening)
    double = server.engine.double
    prompt = framed_prompt(frame, conversation.turns, conversation.question, double.tokenizer,
                           context_room(double, max_new_tokens), conversation.prefill)
    return prompt.text, frame


# ---------------------------------------------------------------- shared


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def finish_reason(reason: str) -> str:
    # "abort" (stopped by /api/extra/abort or a closed stream) is not an OpenAI reason: the text simply ended.
    return "length" if reason == "length" else "stop"


def usage(generation: Generation) -> dict:
    completion = sum(v.new_tokens for v in generation.variants)
    return {"prompt_tokens": generation.prompt_tokens, "completion_tokens": completion,
            "total_tokens": generation.prompt_tokens + completion}


def _decoding(server: Server, body: Sampling, max_new_tokens: int, text_chars: int) -> Decoding:
    body.refuse_unsupported()
    check_variants(server, body.n, "n")
    check_new_tokens(server, max_new_tokens, "max_tokens")
    check_text(server, text_chars, "prompt")
    check_stops(body.stops(), "stop")
    return client_decoding(server, body.temperature, max_new_tokens, body.seed, body.stops(), top_p=body.top_p,
                           top_k=body.top_k, min_p=body.min_p, typical_p=body.typical_p,
                           repetition_penalty=body.repetition_penalty)


VOICE_MODEL = "dvoinik:"  # model names "dvoinik:<voice>" (and "dvoinik:A=0.7,B=0.3") pick a run's voice


def model_voice(server: Server, body: Sampling) -> Any:
    """The voice a request asks for: its `voice` field, else a model named "dvoinik:<voice>"; None = the target's."""
    if body.voice is not None:
        return client_voice(server, body.voice)
    if body.model and body.model.startswith(VOICE_MODEL):
        try:
            return client_voice(server, body.model[len(VOICE_MODEL):])
        except GenerationError as exc:
            raise invalid("model", str(exc)) from None
    return None


def model_name(server: Server, body: Sampling) -> str:
    """The model a response names: the voice model asked for, else the checkpoint."""
    if body.model and body.model.startswith(VOICE_MODEL) and server.engine.double.voices:
        return body.model
    return server.engine.double.checkpoint


def _submit(server: Server, prompt: str, decoding: Decoding, body: Sampling, frame: Frame | None = None) -> Job:
    return submit_logged(server, "openai", prompt, decoding, body.n, server.generate.guard, stream=body.stream,
                         voice=model_voice(server, body), frame=frame)


async def _result(request: Request, job: Job) -> Generation:
    async with aborted_if_client_leaves(request, job):
        return await job.result()


def _stream(job: Job, n: int, chunk: Any, piece: Any, include_usage: bool,
            opening: list[str] | None = None) -> Any:
    """SSE for a job: `opening`, then `piece(index, text)` chunks, a closing chunk per choice, usage, `[DONE]`.

    `chunk(choices, usage)` wraps choices in the response's envelope; `piece(index, text, reason)`
    is one choice of a chunk.
    """
    sent = [""] * n

    def encode(event: tuple) -> list[str]:
        if event[0] == "text":
            sent[event[1]] += event[2]
            return [sse(chunk([piece(event[1], event[2], None)]))]
        if event[0] == "done":
            result: Generation = event[1]
            out = []
            for i, variant in enumerate(result.variants):
                # Beam search streams nothing: what was not sent goes with the closing chunk.
                rest = variant.text[len(sent[i]):] if variant.text.startswith(sent[i]) else ""
                out.append(sse(chunk([piece(i, rest, finish_reason(variant.finish_reason))])))
            if include_usage:
                out.append(sse(chunk([], usage(result))))
            return out + [sse("[DONE]")]
        return [sse({"error": {"message": event[1], "type": "server_error", "param": None, "code": None}})]

    async def events() -> Any:
        try:
            for text in opening or []:
                yield text
            async for text in job_stream(job, encode):
                yield text
        finally:  # the client went away before the job's stream began: stop it all the same
            job.abort()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ---------------------------------------------------------------- models


def _model(model_id: str) -> dict:
    # created: the checkpoint's time is not known here, and a made-up one would be worse than 0.
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "dvoinik"}


def model_ids(server: Server) -> list[str]:
    """The checkpoint, then one "dvoinik:<voice>" per voice of a run with voices."""
    return [server.engine.double.checkpoint] + [VOICE_MODEL + name for name in server.engine.double.voices]


@router.get("/models")
def models(request: Request) -> dict:
    return {"object": "list", "data": [_model(name) for name in model_ids(server_of(request))]}


@router.get("/models/{model_id:path}")
def model(request: Request, model_id: str) -> dict:
    server = server_of(request)
    if model_id not in model_ids(server):
        raise HTTPException(404, f"The model '{model_id}' does not exist; this server has "
                                 f"{', '.join(repr(m) for m in model_ids(server))}")
    return _model(model_id)


# ---------------------------------------------------------------- completions


@router.post("/completions")
async def completions(request: Request, body: CompletionInput) -> Any:
    server = server_of(request)
    if isinstance(body.prompt, list) and len(body.prompt) > 1:
        raise invalid("prompt", "one prompt per request (send several requests, or n for several continuations)")
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    if body.suffix:
        raise invalid("suffix", "not supported: the double continues text, it does not fill gaps")
    if body.best_of is not None and body.best_of != body.n:
        raise invalid("best_of", "not supported by this server (leave it out, or equal to n)")
    decoding = _decoding(server, body, body.max_tokens or COMPLETION_DEFAULT_TOKENS, len(prompt))
    job = _submit(server, prompt, decoding, body)  # Busy: 503 with Retry-After
    head = {"id": _id("cmpl"), "object": "text_completion", "created": int(time.time()),
            "model": model_name(server, body)}
    echo = prompt if body.echo else ""
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(choices: list[dict], counts: dict | None = None) -> dict:
            return {**head, "choices": choices, **({"usage": counts} if include_usage else {})}

        def piece(index: int, text: str, reason: str | None) -> dict:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}

        opening = [sse(chunk([piece(i, echo, None)])) for i in range(body.n)] if echo else None
        return _stream(job, body.n, chunk, piece, include_usage, opening)
    result = await _result(request, job)
    return {**head, "choices": [
        {"index": i, "text": echo + v.text, "logprobs": None, "finish_reason": finish_reason(v.finish_reason),
         "copy": copy_json(v)} for i, v in enumerate(result.variants)
    ], "usage": usage(result)}


# ---------------------------------------------------------------- chat completions


@router.post("/chat/completions")
async def chat_completions(request: Request, body: ChatInput) -> Any:
    server = server_of(request)
    if body.tools:
        raise invalid("tools", "not supported: the double writes prose, it does not call tools")
    if body.response_format and body.response_format.get("type", "text") != "text":
        raise invalid("response_format", "only text: the double writes prose")
    conversation = chat_conversation(body.messages)
    wanted = body.max_completion_tokens or body.max_tokens
    max_new = wanted or min(server.generate.max_new_tokens, server.settings.max_new_tokens)
    check_text(server, sum(len(m.text()) for m in body.messages), "messages")
    prompt, frame = await run_in_threadpool(chat_prompt, server, conversation, max_new)
    decoding = answer_decoding(frame, _decoding(server, body, max_new, len(prompt)))
    job = _submit(server, prompt, decoding, body, frame)  # Busy: 503 with Retry-After
    head = {"id": _id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": model_name(server, body)}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(choices: list[dict], counts: dict | None = None) -> dict:
            return {**head, "object": "chat.completion.chunk", "choices": choices,
                    **({"usage": counts} if include_usage else {})}

        def piece(index: int, text: str, reason: str | None) -> dict:
            delta = {"content": text} if text or reason is None else {}
            return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

        opening = [sse(chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                               "finish_reason": None}])) for i in range(body.n)]
        return _stream(job, body.n, chunk, piece, include_usage, opening)
    result = await _result(request, job)
    return {**head, "choices": [
        {"index": i, "message": {"role": "assistant", "content": v.text}, "logprobs": None,
         "finish_reason": finish_reason(v.finish_reason), "copy": copy_json(v)} for i, v in enumerate(result.variants)
    ], "usage": usage(result)}
