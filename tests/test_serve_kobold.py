"""The KoboldAI-compatible API, driven over HTTP against a real server, as KoboldAI Lite and SillyTavern drive it."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from memorising import memorising_double
from serving_compat import API_KEY, compat_server, compat_workspace, double_server

from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.variants import generate
from dvoinik.serve.kobold import kobold_prompt

PROMPT = "Ба ве го да ле"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return compat_workspace(tmp_path_factory.mktemp("kobold"))


@pytest.fixture(scope="module")
def served(workspace):
    with compat_server(workspace) as (url, server):
        yield url, server


@pytest.fixture
def client(served):
    with httpx.Client(base_url=served[0], timeout=60) as c:
        yield c


def sse_events(text: str) -> list[tuple[str | None, dict]]:
    """(event name, JSON data) of each server-sent event in a body."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        events.append((name, json.loads(data)))
    return events


def test_information_routes_answer_as_koboldcpp_does(client, served):
    _, server = served
    checkpoint = server.engine.double.checkpoint
    assert client.get("/api/v1/model").json() == {"result": f"dvoinik/{checkpoint}"}
    assert client.get("/api/latest/model").json() == {"result": f"dvoinik/{checkpoint}"}
    assert client.get("/api/v1/info/version").json() == {"result": "1.2.5"}
    assert client.get("/api/v1/config/max_context_length").json() == {"value": server.context_tokens}
    assert client.get("/api/extra/true_max_context_length").json() == {"value": server.context_tokens}
    assert server.context_tokens == server.engine.double.trained_length == 128
    assert client.get("/api/v1/config/max_length").json() == {"value": server.settings.max_new_tokens}
    version = client.get("/api/extra/version").json()
    # SillyTavern and KoboldAI Lite turn on streaming, tokencount and abort when they see this.
    assert version["result"] == "KoboldCpp" and version["version"] and version["protected"] is False
    assert version["server"] == "dvoinik"
    assert client.get("/api/extra/perf").json() == {"queue": 0, "idle": 1}


def test_generate_maps_koboldai_samplers_onto_the_double(client, served):
    _, server = served
    body = {"prompt": PROMPT, "max_length": 12, "n": 2, "temperature": 0.9, "top_p": 0.8, "top_k": 40, "rep_pen": 1.1,
            "sampler_seed": 5, "typical": 1, "min_p": 0.05,
            # What SillyTavern also sends, which the double does not honour: accepted, ignored.
            "rep_pen_range": 1024, "rep_pen_slope": 0.7, "tfs": 1, "top_a": 0, "sampler_order": [6, 0, 1, 3, 4, 2, 5],
            "use_default_badwordsids": False, "mirostat": 0, "grammar": "", "quiet": True, "gui_settings": False,
            "use_world_info": False, "can_abort": True}
    answer = client.post("/api/v1/generate", json=body)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    # The same request made in-process: the fields are the double's samplers, the guard is on.
    expected = generate(server.engine.double, PROMPT,
                        decoding_for("coherent", temperature=0.9, top_p=0.8, top_k=40, repetition_penalty=1.1,
                                     typical_p=1.0, min_p=0.05, max_new_tokens=12, seed=5),
                        n=2, guard=server.generate.guard)
    assert [r["text"] for r in results] == [v.text for v in expected.variants]
    assert [r["finish_reason"] for r in results] == [v.finish_reason for v in expected.variants]
    assert [r["completion_tokens"] for r in results] == [v.new_tokens for v in expected.variants]
    assert results[0]["text"] != results[1]["text"]
    tokens = len(server.engine.double.tokenizer(PROMPT, add_special_tokens=False).input_ids)
    assert all(r["prompt_tokens"] == tokens for r in results)
    assert all(not r["text"].startswith(PROMPT) for r in results)  # the continuation only
    assert all(r["copy"] is not None and r["copy"]["tokens"] < server.generate.guard for r in results)


def test_every_request_is_in_the_studios_generation_log(client, served):
    _, server = served
    body = {"prompt": PROMPT, "memory": "Ми но. ", "max_length": 6, "n": 2, "sampler_seed": 17, "temperature": 0.9}
    results = client.post("/api/v1/generate", json=body).json()["results"]
    entry = server.store.generations(limit=1)[0]
    assert (entry.source, entry.status, entry.seed, entry.document_id) == ("kobold", "done", 17, None)
    assert entry.prompt == "Ми но. " + PROMPT  # what the double continued: memory first
    assert entry.settings["temperature"] == 0.9 and entry.settings["n"] == 2
    assert entry.settings["guard"] == server.generate.guard
    assert [v["text"] for v in entry.variants] == [r["text"] for r in results]


def test_same_seed_same_text_and_temperature_zero_is_greedy(client):
    def text(**fields):
        answer = client.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 10, **fields})
        assert answer.status_code == 200, answer.text
        return answer.json()["results"][0]["text"]

    assert text(sampler_seed=21, temperature=1.0) == text(sampler_seed=21, temperature=1.0)
    assert text(sampler_seed=21, temperature=1.0) != text(sampler_seed=22, temperature=1.0)
    assert text(temperature=0, sampler_seed=1) == text(temperature=0, sampler_seed=2)


def test_stop_sequence_and_trim_stop(client):
    def result(**fields):
        answer = client.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 30, "temperature": 0, **fields})
        assert answer.status_code == 200, answer.text
        return answer.json()["results"][0]

    free = result()["text"]
    stop = free[6:8]
    assert len(stop) == 2
    cut = free[: free.index(stop)]
    stopped = result(stop_sequence=[stop])
    assert stopped == {**stopped, "text": cut, "finish_reason": "stop"}
    assert result(stop_sequence=[stop], trim_stop=False)["text"] == cut + stop


def test_memory_stays_and_the_prompt_is_cut_to_max_context_length(client, served):
    _, server = served
    double = server.engine.double
    memory = "Память: ми но пу. "
    story = " ".join(["ра со ти ку ше"] * 40)
    fitted = kobold_prompt(double, memory, story, 40, 10)
    ids = double.tokenizer(fitted, add_special_tokens=False).input_ids
    assert fitted.startswith(memory) and story.endswith(fitted[len(memory):]) and len(fitted) < len(memory + story)
    assert 25 <= len(ids) <= 30
    answer = client.post("/api/v1/generate", json={"prompt": story, "memory": memory, "max_context_length": 40,
                                                   "max_length": 10, "temperature": 0})
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0]["prompt_tokens"] == len(ids)
    # The same request in-process, on the fitted prompt: the API continued exactly that text.
    expected = generate(double, fitted, decoding_for("greedy", max_new_tokens=10), guard=server.generate.guard)
    assert answer.json()["results"][0]["text"] == expected.variants[0].text


@pytest.mark.parametrize(("fields", "field"), [
    ({"max_length": -1}, "max_length"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n"),
    ({"n": 99}, "n"),  # beyond [serve] max_variants
    ({"max_length": 5000}, "max_length"),  # beyond [serve] max_new_tokens
    ({"max_context_length": 10, "max_length": 10}, "max_context_length"),
    ({"stop_sequence": "not a list"}, "stop_sequence"),
    ({"grammar": "root ::= \"a\""}, "grammar"),
    ({"sampler_seed": -2}, "sampler_seed"),
])
def test_a_bad_field_is_a_422_in_koboldai_shape(client, fields, field):
    answer = client.post("/api/v1/generate", json={"prompt": PROMPT, **fields})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert list(detail) == [field] and all(isinstance(m, str) and m for m in detail[field])


def test_a_missing_prompt_is_a_422(client):
    answer = client.post("/api/v1/generate", json={"max_length": 10})
    assert answer.status_code == 422 and "prompt" in answer.json()["detail"]


def test_tokencount_counts_as_the_double_reads(client, served):
    ids = served[1].engine.double.tokenizer(PROMPT, add_special_tokens=False).input_ids
    assert client.post("/api/extra/tokencount", json={"prompt": PROMPT}).json() == {"value": len(ids), "ids": ids}
    assert client.post("/api/extra/tokencount", json={"prompt": ""}).json() == {"value": 0, "ids": []}


def test_stream_sends_koboldcpp_events_that_add_up_to_the_text(client):
    body = {"prompt": PROMPT, "max_length": 16, "temperature": 0.8, "sampler_seed": 9}
    whole = client.post("/api/v1/generate", json=body).json()["results"][0]
    answer = client.post("/api/extra/generate/stream", json=body)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    assert len(events) >= 2 and all(name == "message" for name, _ in events)
    assert all(data["finish_reason"] is None for _, data in events[:-1])
    assert events[-1][1]["finish_reason"] == whole["finish_reason"]
    assert "".join(data["token"] for _, data in events) == whole["text"]


def test_stream_of_several_variants_is_refused(client):
    answer = client.post("/api/extra/generate/stream", json={"prompt": PROMPT, "n": 2})
    assert answer.status_code == 422 and "n" in answer.json()["detail"]


def _wait_for_text(client: httpx.Client, genkey: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = client.post("/api/extra/generate/check", json={"genkey": genkey}).json()["results"][0]["text"]
        if text:
            return text
        time.sleep(0.01)
    raise AssertionError("the generation wrote nothing")


def test_abort_by_genkey_returns_the_partial_text(client, served):
    # Greedy decoding on this model never ends the text: 1000 tokens take seconds, unless aborted.
    body = {"prompt": PROMPT, "max_length": 1000, "temperature": 0, "genkey": "KCPP1234"}
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(httpx.post(served[0] + "/api/v1/generate", json=body,
                                                                       timeout=60)))
    worker.start()
    partial = _wait_for_text(client, "KCPP1234")
    assert client.post("/api/extra/abort", json={"genkey": "someone-else"}).json() == {"success": "false"}
    assert client.post("/api/extra/abort", json={"genkey": "KCPP1234"}).json() == {"success": "true"}
    worker.join(30)
    result = answers[0].json()["results"][0]
    assert result["finish_reason"] == "abort"
    assert result["text"].startswith(partial) and 0 < result["completion_tokens"] < 1000
    assert served[1].store.generations(limit=1)[0].status == "aborted"
    # Finished requests are forgotten: nothing to check, nothing to abort.
    assert client.post("/api/extra/generate/check", json={"genkey": "KCPP1234"}).json() == {"results": [{"text": ""}]}
    assert client.post("/api/extra/abort", json={"genkey": "KCPP1234"}).json() == {"success": "false"}


def test_abort_of_a_waiting_request_and_of_a_waiting_stream(client, served):
    url = served[0]
    long = {"prompt": PROMPT, "max_length": 1000, "temperature": 0}
    answers: dict[str, httpx.Response] = {}

    def send(name: str, path: str, body: dict) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(name, httpx.post(url + path, json=body,
                                                                                      timeout=60)))
        thread.start()
        return thread

    threads = [send("running", "/api/v1/generate", {**long, "genkey": "RUN"})]
    _wait_for_text(client, "RUN")
    threads.append(send("waiting", "/api/v1/generate", {**long, "n": 2, "genkey": "WAIT"}))
    threads.append(send("stream", "/api/extra/generate/stream", {**long, "genkey": "WAITS"}))
    deadline = time.monotonic() + 10
    while client.get("/api/extra/perf").json()["queue"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.post("/api/extra/abort", json={"genkey": "WAIT"}).json() == {"success": "true"}
    assert client.post("/api/extra/abort", json={"genkey": "WAITS"}).json() == {"success": "true"}
    assert client.post("/api/extra/abort", json={"genkey": "RUN"}).json() == {"success": "true"}
    for thread in threads:
        thread.join(30)
    assert answers["running"].json()["results"][0]["finish_reason"] == "abort"
    assert answers["waiting"].json() == {"results": [{"text": "", "finish_reason": "abort"}] * 2}
    assert sse_events(answers["stream"].text) == [("message", {"token": "", "finish_reason": "abort"})]


def test_abort_without_genkey_stops_the_running_stream(client, served):
    body = {"prompt": PROMPT, "max_length": 1000, "temperature": 0}
    with client.stream("POST", "/api/extra/generate/stream", json=body) as answer:
        assert answer.status_code == 200
        lines = answer.iter_lines()
        assert next(lines) == "event: message"
        assert json.loads(next(lines)[6:])["token"]
        # The keyless check reads the latest request; the keyless abort stops the running one (as KoboldCpp's do).
        assert client.get("/api/extra/generate/check").json()["results"][0]["text"]
        assert client.post("/api/extra/abort").json() == {"success": "true"}
        rest = "\n".join(lines)
    last = sse_events(rest)[-1][1]
    assert last["finish_reason"] == "abort"
    deadline = time.monotonic() + 10  # the model's thread lets go of the job just after its last event
    while client.get("/api/extra/perf").json()["idle"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.post("/api/extra/abort", content=b"not json").json() == {"success": "false"}  # nothing runs


def test_the_originality_guard_stays_on_for_api_clients(tmp_path):
    double, ids = memorising_double(tmp_path, steps=100)
    opening = double.tokenizer.decode(ids[:20])
    unguarded = generate(double, opening, decoding_for("greedy", max_new_tokens=40))
    assert unguarded.variants[0].copy.tokens >= 30  # the model has learnt its text by heart
    with double_server(double, tmp_path) as (url, server):
        answer = httpx.post(url + "/api/v1/generate", json={"prompt": opening, "max_length": 40, "temperature": 0},
                            timeout=60)
    result = answer.json()["results"][0]
    assert result["completion_tokens"] == 40
    assert result["copy"]["tokens"] < server.generate.guard == 10
    assert result["copy"]["work"] == "Заученное"


def test_api_key(workspace):
    with compat_server(workspace, api_key=API_KEY) as (url, _):
        assert httpx.get(url + "/api/v1/model").status_code == 401
        refused = httpx.post(url + "/api/v1/generate", json={"prompt": PROMPT}, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and refused.json()["detail"]["type"] == "authentication_error"
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        assert httpx.get(url + "/api/v1/model", headers=bearer).status_code == 200
        answer = httpx.post(url + "/api/v1/generate", json={"prompt": PROMPT, "max_length": 4}, headers=bearer,
                            timeout=60)
        assert answer.status_code == 200 and answer.json()["results"][0]["completion_tokens"] <= 4
        # A client learns that it needs a key before it has one, as from KoboldCpp.
        version = httpx.get(url + "/api/extra/version")
        assert version.status_code == 200 and version.json()["protected"] is True


@pytest.mark.parametrize(("body", "field"), [
    (b'{"prompt": "a\\ud800b"}', "prompt"),
    (b'{"prompt": "a", "memory": "\\udfff"}', "memory"),
    (b'{"prompt": "a", "stop_sequence": ["ok", "\\udc80"]}', "stop_sequence"),
    (b'{"prompt": "a", "genkey": "KCPP\\ud800"}', "genkey"),
])
def test_a_lone_surrogate_is_a_422_naming_the_field(client, body, field):
    answer = client.post("/api/v1/generate", content=body, headers={"Content-Type": "application/json"})
    detail = answer.json()["detail"]
    assert answer.status_code == 422 and len(detail) == 1 and next(iter(detail)).startswith(field)
    # Our words, or pydantic's own for a string with a length limit: either way, the field and no 500.
    assert "lone surrogate" in str(detail) or "unicode string" in str(detail)
    counted = client.post("/api/extra/tokencount", content=b'{"prompt": "\\ud83d"}',
                          headers={"Content-Type": "application/json"})
    assert counted.status_code == 422 and "prompt" in counted.json()["detail"]
    paired = client.post("/api/extra/tokencount", content=b'{"prompt": "\\ud83d\\ude00"}',  # a pair is a character
                         headers={"Content-Type": "application/json"})
    assert paired.status_code == 200


def test_stop_strings_are_bounded_in_total(client):
    many = client.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 2,
                                                  "stop_sequence": ["я" * 990 + str(i) for i in range(64)]})
    assert many.status_code == 422 and "stop_sequence" in many.json()["detail"]
    assert "2000" in many.json()["detail"]["stop_sequence"][0]
