"""The OpenAI-compatible API, driven by the official `openai` client against a real server; and the server under load."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from serving_compat import API_KEY, compat_server, compat_workspace

from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.variants import generate

PROMPT = "Ба ве го да ле"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return compat_workspace(tmp_path_factory.mktemp("openai"))


@pytest.fixture(scope="module")
def served(workspace):
    with compat_server(workspace) as (url, server):
        yield url, server


@pytest.fixture
def client(served):
    with openai.OpenAI(base_url=served[0] + "/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def tokens(server, text: str) -> int:
    return len(server.engine.double.tokenizer(text, add_special_tokens=False).input_ids)


def test_models(client, served):
    checkpoint = served[1].engine.double.checkpoint
    assert [m.id for m in client.models.list()] == [checkpoint]
    assert client.models.retrieve(checkpoint).owned_by == "dvoinik"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_completions_are_the_doubles_variants_with_real_usage(client, served):
    _, server = served
    answer = client.completions.create(model="any-name", prompt=PROMPT, max_tokens=12, n=3, seed=7, temperature=0.9,
                                       top_p=0.8, extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1})
    expected = generate(server.engine.double, PROMPT,
                        decoding_for("coherent", temperature=0.9, top_p=0.8, top_k=40, min_p=0.05,
                                     repetition_penalty=1.1, max_new_tokens=12, seed=7),
                        n=3, guard=server.generate.guard)
    assert answer.object == "text_completion" and answer.model == server.engine.double.checkpoint
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert [c.text for c in answer.choices] == [v.text for v in expected.variants]
    assert [c.finish_reason for c in answer.choices] == [v.finish_reason for v in expected.variants]
    assert len({c.text for c in answer.choices}) == 3
    assert answer.usage.prompt_tokens == tokens(server, PROMPT)
    assert answer.usage.completion_tokens == sum(v.new_tokens for v in expected.variants)
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_requests_are_in_the_studios_generation_log(client, served):
    _, server = served
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}], max_tokens=5,
                                            n=2, seed=12)
    entry = server.store.generations(limit=1)[0]
    framed = server.interview.asked(PROMPT).rstrip(" ")  # the chat's question in the author's frame
    assert (entry.source, entry.status, entry.seed, entry.prompt) == ("openai", "done", 12, framed)
    assert [v["text"] for v in entry.variants] == [c.message.content for c in answer.choices]
    chunks = client.completions.create(model="m", prompt=PROMPT, max_tokens=4, stream=True, seed=13)
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    entry = server.store.generations(limit=1)[0]
    assert (entry.source, entry.status, entry.seed) == ("openai", "done", 13)
    assert entry.variants[0]["text"] == streamed


def test_seed_reproduces_and_temperature_zero_is_greedy(client, served):
    def text(**fields):
        return client.completions.create(model="m", prompt=PROMPT, max_tokens=10, **fields).choices[0].text

    assert text(seed=3, temperature=1.0) == text(seed=3, temperature=1.0)
    assert text(seed=3, temperature=1.0) != text(seed=4, temperature=1.0)
    greedy = generate(served[1].engine.double, PROMPT, decoding_for("greedy", max_new_tokens=10),
                      guard=served[1].generate.guard)
    assert text(temperature=0, seed=1) == text(temperature=0, seed=2) == greedy.variants[0].text


def test_max_tokens_counts_and_length_is_reported(client):
    answer = client.completions.create(model="m", prompt=PROMPT, max_tokens=5, temperature=0)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 5


def test_stop_as_string_and_as_list(client):
    free = client.completions.create(model="m", prompt=PROMPT, max_tokens=30, temperature=0).choices[0].text
    stop = free[6:8]
    cut = free[: free.index(stop)]
    for given in (stop, [stop, "never-written"]):
        choice = client.completions.create(model="m", prompt=PROMPT, max_tokens=30, temperature=0, stop=given).choices[0]
        assert (choice.text, choice.finish_reason) == (cut, "stop")


def test_echo_puts_the_prompt_first(client):
    plain = client.completions.create(model="m", prompt=PROMPT, max_tokens=6, temperature=0).choices[0].text
    echoed = client.completions.create(model="m", prompt=PROMPT, max_tokens=6, temperature=0, echo=True)
    assert echoed.choices[0].text == PROMPT + plain


def test_streamed_completions_add_up_to_the_answer(client):
    fields = {"model": "m", "prompt": PROMPT, "max_tokens": 12, "n": 2, "seed": 5, "temperature": 0.9}
    whole = client.completions.create(**fields)
    texts, reasons, usages = ["", ""], [None, None], []
    for chunk in client.completions.create(**fields, stream=True, stream_options={"include_usage": True}):
        usages.append(chunk.usage)
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert texts == [c.text for c in whole.choices]
    assert reasons == [c.finish_reason for c in whole.choices]
    assert all(u is None for u in usages[:-1]) and usages[-1] == whole.usage


def test_chat_is_an_interview_in_the_authors_frame(client, served):
    """System messages open the conversation, user messages are questions, assistant messages earlier answers."""
    from dataclasses import replace

    from dvoinik.generation.interview import (
        Turn,
        answer_decoding,
        answer_opens_with_text,
        context_room,
        framed_prompt,
    )

    _, server = served
    double, frame = server.engine.double, server.interview
    assert frame.name == "letter"  # the synthetic authors write no dialogue of their own
    messages = [{"role": "system", "content": "Ми но пу ра."}, {"role": "user", "content": "Ба ве?"},
                {"role": "assistant", "content": "Го да."}, {"role": "user", "content": PROMPT}]
    chat = client.chat.completions.create(model="m", messages=messages, max_tokens=10, seed=2, temperature=0.9)
    prompt = framed_prompt(replace(frame, preamble="Ми но пу ра."), [Turn("Ба ве?", "Го да.")], PROMPT,
                           double.tokenizer, context_room(double, 10)).text
    assert prompt == "Ми но пу ра.\n\n" + frame.turn("Ба ве?", "Го да.") + frame.asked(PROMPT).rstrip(" ")
    assert server.store.generations(limit=1)[0].prompt == prompt
    with answer_opens_with_text(double, frame):
        expected = generate(double, prompt, answer_decoding(frame, decoding_for("coherent", temperature=0.9,
                                                                                max_new_tokens=10, seed=2)),
                            guard=server.generate.guard)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == expected.variants[0].text
    assert frame.end not in chat.choices[0].message.content  # cut where the answer's turn ends
    assert chat.usage.prompt_tokens == tokens(served[1], prompt)
    # A chat that ends with the assistant asks for that answer to go on.
    client.chat.completions.create(model="m", messages=messages + [{"role": "assistant", "content": "Ле ми"}],
                                   max_tokens=3)
    assert server.store.generations(limit=1)[0].prompt.endswith(frame.asked(PROMPT) + "Ле ми")
    with pytest.raises(openai.BadRequestError, match="a user message"):
        client.chat.completions.create(model="m", messages=[{"role": "system", "content": "Ми"}], max_tokens=3)


def test_streamed_chat_adds_up_to_the_answer(client):
    fields = {"model": "m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 12, "n": 3, "seed": 8}
    whole = client.chat.completions.create(**fields)
    texts, roles, reasons = [""] * 3, [None] * 3, [None] * 3
    chunks = list(client.chat.completions.create(**fields, stream=True))
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk" and chunk.usage is None
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            roles[choice.index] = roles[choice.index] or choice.delta.role
            reasons[choice.index] = choice.finish_reason or reasons[choice.index]
    assert texts == [c.message.content for c in whole.choices]
    assert roles == ["assistant"] * 3
    assert reasons == [c.finish_reason for c in whole.choices]


def test_closing_a_stream_stops_its_generation(served):
    url, server = served
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 1000, "temperature": 0, "stream": True}
    with httpx.Client(base_url=url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as answer:
            lines = answer.iter_lines()
            assert next(lines).startswith("data: ")  # the role
            next(lines)
            assert '"content"' in next(lines)  # the first words
        # 1000 greedy tokens take seconds on this model; stopped, the model is free at once.
        deadline = time.monotonic() + 1.0
        while http.get("/api/extra/perf").json()["idle"] != 1:
            assert time.monotonic() < deadline, "the generation went on after its client left"
            time.sleep(0.01)
        entry = server.store.generations(limit=1)[0]
        assert (entry.source, entry.status) == ("openai", "aborted")
        # The model's thread outlived the stream (it used to die settling a future its waiter had cancelled).
        after = http.post("/v1/completions", json={"prompt": PROMPT, "max_tokens": 3}, timeout=10)
        assert after.status_code == 200 and after.json()["usage"]["completion_tokens"] <= 3


@pytest.mark.parametrize(("fields", "words"), [
    ({"n": 99}, "max_variants"),
    ({"max_tokens": 5000}, "max_new_tokens"),
    ({"suffix": "end"}, "suffix"),
    ({"best_of": 3}, "best_of"),
    ({"frequency_penalty": 0.5}, "repetition_penalty"),
    ({"logit_bias": {"5": 10}}, "logit_bias"),
    ({"prompt": ["one", "two"]}, "one prompt"),
    ({"top_p": 0}, "top_p"),
    ({"extra_body": {"grammar": "root ::= \"a\""}}, "grammar"),
])
def test_what_cannot_be_honoured_is_a_400(client, fields, words):
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(**{"model": "m", "prompt": PROMPT, "max_tokens": 4, **fields})
    assert raised.value.status_code == 400 and words in raised.value.message


def test_logprobs_are_ignored_not_refused(client):
    """SillyTavern asks for them when its token-probabilities option is on: the text is the same without them."""
    plain = client.completions.create(model="m", prompt=PROMPT, max_tokens=6, temperature=0)
    asked = client.completions.create(model="m", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=5)
    assert asked.choices[0].text == plain.choices[0].text and asked.choices[0].logprobs is None
    chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": PROMPT}], max_tokens=4,
                                          logprobs=True, top_logprobs=3)
    assert chat.choices[0].logprobs is None


def test_a_sillytavern_koboldcpp_body_is_understood(served):
    """SillyTavern's Text Completion → KoboldCpp posts to /v1/completions with KoboldCpp's fields mixed in."""
    url, server = served
    body = {"prompt": PROMPT, "model": server.engine.double.checkpoint, "max_new_tokens": 10, "max_tokens": 10,
            "temperature": 0.9, "top_p": 0.8, "typical_p": 1, "typical": 1, "min_p": 0.05, "repetition_penalty": 1.1,
            "frequency_penalty": 0, "presence_penalty": 0, "top_k": 40, "skew": 0, "min_tokens": 0,
            "add_bos_token": True, "smoothing_factor": 0, "smoothing_curve": 1, "dry_allowed_length": 2,
            "dry_multiplier": 0, "dry_base": 1.75, "dry_sequence_breakers": ["\n", ":"], "dry_penalty_last_n": 0,
            "max_tokens_second": 0, "stopping_strings": [], "stop": [], "truncation_length": 8192,
            "ban_eos_token": False, "skip_special_tokens": True, "include_reasoning": True, "top_a": 0, "tfs": 1,
            "mirostat_mode": 0, "mirostat_tau": 5, "mirostat_eta": 0.1, "custom_token_bans": "", "banned_strings": [],
            "api_type": "koboldcpp", "api_server": url, "sampler_order": [6, 0, 1, 3, 4, 2, 5],
            "xtc_threshold": 0.1, "xtc_probability": 0, "nsigma": 0, "top_n_sigma": 0, "min_keep": 0, "trim_stop": True,
            "rep_pen": 1.1, "rep_pen_range": 0, "repetition_penalty_range": 0, "seed": 4, "guidance_scale": 1,
            "negative_prompt": "", "repeat_penalty": 1.1, "repeat_last_n": 0, "n_predict": 10, "num_predict": 10,
            "num_ctx": 8192, "mirostat": 0, "ignore_eos": False, "rep_pen_slope": 1}
    answer = httpx.post(url + "/v1/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    expected = generate(server.engine.double, PROMPT,
                        decoding_for("coherent", temperature=0.9, top_p=0.8, typical_p=1.0, min_p=0.05,
                                     repetition_penalty=1.1, top_k=40, max_new_tokens=10, seed=4),
                        guard=server.generate.guard)
    assert answer.json()["choices"][0]["text"] == expected.variants[0].text


def test_chat_refusals_and_a_bad_type(client, served):
    with pytest.raises(openai.BadRequestError, match="tools"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], tools=[
            {"type": "function", "function": {"name": "f", "parameters": {}}}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[])
    answer = httpx.post(served[0] + "/v1/completions", json={"prompt": PROMPT, "temperature": "hot"})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error" and "temperature" in answer.json()["error"]["message"]


def test_api_key(workspace):
    with compat_server(workspace, api_key=API_KEY) as (url, _):
        refused = httpx.get(url + "/v1/models")
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        with openai.OpenAI(base_url=url + "/v1", api_key="wrong-key", max_retries=0) as wrong:
            with pytest.raises(openai.AuthenticationError):
                wrong.completions.create(model="m", prompt=PROMPT, max_tokens=2)
        with openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0, timeout=60) as right:
            assert right.completions.create(model="m", prompt=PROMPT, max_tokens=2).usage.completion_tokens <= 2


def test_fifty_concurrent_requests_get_answers_or_503_never_a_500(workspace):
    """KoboldAI and OpenAI requests, streamed and not, at once against a queue of 2."""
    kobold = {"prompt": PROMPT, "max_length": 120, "temperature": 0}
    requests = []
    for i in range(50):
        kind = i % 4
        if kind == 0:
            requests.append(("/api/v1/generate", kobold))
        elif kind == 1:
            requests.append(("/api/extra/generate/stream", kobold))
        elif kind == 2:
            requests.append(("/v1/completions", {"prompt": PROMPT, "max_tokens": 120, "temperature": 0}))
        else:
            requests.append(("/v1/chat/completions", {"messages": [{"role": "user", "content": PROMPT}],
                                                      "max_tokens": 120, "temperature": 0, "stream": True}))

    async def send_all(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            return await asyncio.gather(*(http.post(path, json=body) for path, body in requests))

    with compat_server(workspace, queue_size=2) as (url, _):
        answers = asyncio.run(send_all(url))
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses and 503 in statuses, statuses
        for (path, _), answer in zip(requests, answers):
            if answer.status_code == 503:
                assert int(answer.headers["Retry-After"]) >= 1
                body = answer.json()
                if path.startswith("/v1/"):
                    assert body["error"]["code"] == 503
                else:  # KoboldCpp's own words
                    assert body["detail"] == {"msg": "Server is busy; please try again later.",
                                              "type": "service_unavailable"}
            elif "stream" in path or "chat" in path:
                assert "error" not in answer.text and answer.text.strip().endswith(("[DONE]", "}"))
        # And it still answers.
        after = httpx.post(url + "/api/v1/generate", json={"prompt": PROMPT, "max_length": 3}, timeout=60)
        assert after.status_code == 200 and after.json()["results"][0]["completion_tokens"] <= 3


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/completions", b'{"prompt": "a\\ud800"}', "prompt"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\udc00"}]}', "messages.0.content"),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud800"}]}]}',
     "messages.0.content"),
    ("/v1/completions", b'{"prompt": "a", "stop": ["\\ud800"]}', "stop"),
])
def test_a_lone_surrogate_is_refused_naming_the_field(served, path, body, field):
    """Refused as every invalid field is here (OpenAI's 400 invalid_request_error), never a 500."""
    answer = httpx.post(served[0] + path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and field in error["message"]
    assert "lone surrogate" in error["message"] or "unicode string" in error["message"]


def test_stop_strings_are_bounded_in_total(served):
    answer = httpx.post(served[0] + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 2,
                                                             "stop": ["я" * 990 + str(i) for i in range(64)]})
    assert answer.status_code == 400 and "stop" in answer.json()["error"]["message"]
