"""The studio's API on a running server over a tiny trained double: documents, history, context, variants, tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from serving import free_port, running_server

from dvoinik.serve.launch import ServeError, check_binding, open_server


@pytest.fixture(scope="module")
def served(served_ws, tmp_path_factory: pytest.TempPathFactory):
    """(client, server): the studio over the session's double, and the server object behind it."""
    server = open_server(served_ws, database=tmp_path_factory.mktemp("studio") / "studio.sqlite3")
    with running_server(server) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client, server


@pytest.fixture(scope="module")
def studio(served) -> httpx.Client:
    return served[0]


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    """Parse a server-sent event stream into (event, data) pairs."""
    out = []
    for block in response.text.split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        out.append((name, json.loads(data)))
    return out


def new_document(client: httpx.Client, text: str = "Бава шла к морю.", **fields) -> dict:
    doc = client.post("/studio/api/documents", json={"title": "Проба", "text": text}).json()
    if fields:
        doc = client.patch(f"/studio/api/documents/{doc['id']}", json=fields).json()
    return doc


def test_info_describes_the_double(studio: httpx.Client) -> None:
    info = studio.get("/studio/api/info").json()
    assert info["checkpoint"] == "served/checkpoint-24" and info["context_tokens"] == 128
    assert set(info["presets"]) == {"coherent", "nucleus", "greedy", "beam"}
    assert info["defaults"]["guard"] == 10 and info["shareable"] is False and info["auth"] is False


def test_documents_are_created_listed_renamed_edited_and_deleted(studio: httpx.Client) -> None:
    doc = new_document(studio)
    assert doc["title"] == "Проба" and doc["revision"] == 1
    renamed = studio.patch(f"/studio/api/documents/{doc['id']}", json={"title": "Море"}).json()
    assert renamed["title"] == "Море" and renamed["revision"] == 1
    assert any(d["id"] == doc["id"] and d["title"] == "Море" for d in studio.get("/studio/api/documents").json())
    assert studio.delete(f"/studio/api/documents/{doc['id']}").status_code == 204
    assert studio.get(f"/studio/api/documents/{doc['id']}").status_code == 404


def test_bad_fields_are_refused_with_what_is_wrong(studio: httpx.Client) -> None:
    doc = new_document(studio)
    cases = [({"note_depth": -1}, "note_depth"), ({"title": ""}, "title"), ({"settings": {"top_p": 2}}, "top_p"),
             ({"world_info": [{"keys": "not a list"}]}, "keys"), ({"unknown": 1}, "unknown")]
    for body, field in cases:
        response = studio.patch(f"/studio/api/documents/{doc['id']}", json=body)
        assert response.status_code == 422 and field in response.json()["detail"]["msg"], body
    assert studio.get("/studio/api/documents/not-a-number").status_code == 422


def test_undo_and_redo_through_the_api(studio: httpx.Client) -> None:
    doc = new_document(studio, text="Первое.")
    studio.patch(f"/studio/api/documents/{doc['id']}", json={"memory": "Память."})
    undone = studio.post(f"/studio/api/documents/{doc['id']}/undo").json()
    assert undone["memory"] == "" and undone["can_redo"] is True
    assert studio.post(f"/studio/api/documents/{doc['id']}/redo").json()["memory"] == "Память."
    assert studio.post(f"/studio/api/documents/{doc['id']}/redo").status_code == 409


def test_the_context_meter_counts_every_part(studio: httpx.Client) -> None:
    doc = new_document(studio, text="Бава шла к морю.\nВолны били о камни.", memory="Рассказ о Баве.",
                       authors_note="Грустно.", world_info=[{"keys": ["мор"], "content": "Море холодное."},
                                                             {"keys": ["лес"], "content": "Лес далеко."}])
    meter = studio.get(f"/studio/api/documents/{doc['id']}/context", params={"max_new_tokens": 32}).json()
    parts = {p["part"]: p for p in meter["parts"]}
    assert meter["budget"] == 128 and meter["max_new_tokens"] == 32
    assert parts["memory"]["tokens"] > 0 and parts["authors_note"]["tokens"] > 0 and parts["story"]["tokens"] > 0
    assert parts["world_info"]["entries"] == [0]  # the stem "мор" matches "морю"; "лес" is not in the text
    assert meter["prompt"].startswith("Рассказ о Баве.\nМоре холодное.\n") and "[Грустно.]" in meter["prompt"]
    assert meter["used"] <= 128 - 32


def test_variants_stream_are_logged_and_one_is_picked(studio: httpx.Client) -> None:
    doc = new_document(studio)
    response = studio.post(f"/studio/api/documents/{doc['id']}/generate",
                           json={"n": 3, "max_new_tokens": 12, "seed": 5, "preset": "nucleus"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    stream = events(response)
    assert stream[0][0] == "start" and stream[0][1]["seed"] == 5 and stream[-1][0] == "done"
    done = stream[-1][1]
    streamed = ["", "", ""]
    for name, data in stream:
        if name == "text":
            streamed[data["variant"]] += data["text"]
    assert [v["text"] for v in done["variants"]] == streamed  # what streamed is what was written
    assert all(v["copy"] is not None and v["new_tokens"] <= 12 for v in done["variants"])

    picked = studio.post(f"/studio/api/generations/{done['generation_id']}/choose", json={"variant": 2}).json()
    assert picked["text"] == doc["text"] + done["variants"][2]["text"]
    log = studio.get("/studio/api/generations", params={"document": doc["id"]}).json()
    assert log[0]["id"] == done["generation_id"] and log[0]["chosen"] == 2 and log[0]["seed"] == 5
    assert log[0]["status"] == "done" and log[0]["settings"]["preset"] == "nucleus"

    lines = [json.loads(line) for line in studio.get("/studio/api/export/preferences.jsonl").text.splitlines()]
    mine = [line for line in lines if line["generation_id"] == done["generation_id"]]
    assert len(mine) == 2 and {m["chosen"] for m in mine} == {done["variants"][2]["text"]}
    assert {m["rejected"] for m in mine} == {done["variants"][0]["text"], done["variants"][1]["text"]}

    # The same seed writes the same variants; an edited pick is what gets appended.
    again = events(studio.post(f"/studio/api/documents/{doc['id']}/generate",
                               json={"n": 3, "max_new_tokens": 12, "seed": 5, "preset": "nucleus"}))[-1][1]
    assert [v["text"] for v in again["variants"]] == [v["text"] for v in done["variants"]]
    edited = studio.post(f"/studio/api/generations/{again['generation_id']}/choose",
                         json={"variant": 0, "text": " Своими словами."}).json()
    assert edited["text"].endswith(" Своими словами.")
    assert studio.post(f"/studio/api/documents/{doc['id']}/undo").json()["text"] == picked["text"]


def test_discarding_all_variants_changes_nothing(studio: httpx.Client) -> None:
    doc = new_document(studio)
    done = events(studio.post(f"/studio/api/documents/{doc['id']}/generate", json={"n": 2, "max_new_tokens": 4}))[-1][1]
    after = studio.post(f"/studio/api/generations/{done['generation_id']}/choose", json={"variant": None}).json()
    assert after["text"] == doc["text"] and after["revision"] == doc["revision"]
    assert studio.post(f"/studio/api/generations/{done['generation_id']}/choose", json={"variant": 7}).status_code == 422


def test_generation_limits(studio: httpx.Client) -> None:
    doc = new_document(studio)
    assert studio.post(f"/studio/api/documents/{doc['id']}/generate", json={"n": 9}).status_code == 422
    too_long = studio.post(f"/studio/api/documents/{doc['id']}/generate", json={"max_new_tokens": 128})
    assert too_long.status_code == 422 and "no room" in too_long.json()["detail"]["msg"]
    assert studio.post(f"/studio/api/documents/{doc['id']}/generate", json={"preset": "wild"}).status_code == 422


def test_a_generation_is_aborted_by_its_id(studio: httpx.Client) -> None:
    doc = new_document(studio)
    with studio.stream("POST", f"/studio/api/documents/{doc['id']}/generate",
                       json={"n": 1, "max_new_tokens": 96, "guard": 2}) as response:
        lines = response.iter_lines()
        start = next(line for line in lines if line.startswith("data: "))
        generation_id = json.loads(start[6:])["generation_id"]
        assert studio.post(f"/studio/api/generations/{generation_id}/abort").json()["aborted"] is True
        rest = "\n".join(lines)
    assert "event: done" in rest
    logged = studio.get("/studio/api/generations", params={"document": doc["id"]}).json()[0]
    assert logged["status"] in ("aborted", "done")  # done if it finished before the abort arrived


def test_a_closed_stream_stops_the_generation_and_logs_what_was_written(studio: httpx.Client) -> None:
    doc = new_document(studio)
    with studio.stream("POST", f"/studio/api/documents/{doc['id']}/generate",
                       json={"n": 2, "max_new_tokens": 96, "guard": 2}) as response:
        start = next(line for line in response.iter_lines() if line.startswith("data: "))
        generation_id = json.loads(start[6:])["generation_id"]
    # The tab was closed: nobody reads the stream, so the model stops, and the log keeps the variants.
    deadline = time.monotonic() + 30
    while (logged := studio.get("/studio/api/generations", params={"document": doc["id"]}).json()[0])["status"] == "running":
        assert time.monotonic() < deadline, "the generation was not stopped"
        time.sleep(0.05)
    assert logged["id"] == generation_id and logged["status"] in ("aborted", "done")
    assert len(logged["variants"]) == 2


def test_export_as_text_and_markdown(studio: httpx.Client) -> None:
    doc = new_document(studio, text="Глава первая.\n\nБыло утро.")
    studio.patch(f"/studio/api/documents/{doc['id']}", json={"title": "Утро / вечер"})
    txt = studio.get(f"/studio/api/documents/{doc['id']}/export", params={"format": "txt"})
    assert txt.text == "Глава первая.\n\nБыло утро.\n" and "attachment" in txt.headers["content-disposition"]
    assert "filename*=UTF-8''" in txt.headers["content-disposition"] and "/" not in txt.headers["content-disposition"]
    md = studio.get(f"/studio/api/documents/{doc['id']}/export", params={"format": "md"})
    assert md.text.startswith("# Утро / вечер\n\nГлава первая.")
    assert studio.get(f"/studio/api/documents/{doc['id']}/export", params={"format": "exe"}).status_code == 422


def test_a_blind_test_is_created_taken_and_scored(served) -> None:
    studio, server = served
    test = studio.post("/studio/api/blind-tests", json={"passages": 6, "kind": "both"})
    assert test.status_code == 201, test.text
    test = test.json()
    assert len(test["items"]) >= 2 and test["url"].startswith(str(studio.base_url).rstrip("/") + "/blind/")
    assert test["status"] == "open" and test["readers"] == 0 and test["results"] is None
    sealed = json.dumps(studio.get(f"/studio/api/blind-tests/{test['id']}").json())
    assert "truth" not in json.dumps(test) and "truth" not in sealed and "seed" not in sealed  # not even here
    token_path = test["url"][len(str(studio.base_url).rstrip("/")):]
    page = studio.get(token_path)
    assert page.status_code == 200 and "<html" in page.text.lower()
    # The reader's page may fetch its own test only, not the studio's API.
    assert f"connect-src {test['url']}/;" in page.headers["content-security-policy"]
    shown = studio.get(token_path + "/api").json()
    assert shown["closed"] is False and shown["results"] is None
    assert all("truth" not in item for item in shown["items"])
    for item in shown["items"]:  # the double's text is as long as the writer's, in words
        if item["kind"] == "pair":
            assert len(item["a"].split()) == len(item["b"].split())

    stored = server.store.blind_test(test["id"])
    assert stored.seed is not None  # a random seed of its own, kept on the server
    truth = {item["index"]: item["truth"] for item in stored.items}
    right = [{"index": i, "answer": t} for i, t in truth.items()]
    partial = studio.post(token_path + "/api/answers", json={"reader": "Ира", "answers": right[:1]})
    assert partial.status_code == 422 and "answer every item" in partial.json()["detail"]["msg"]
    sent = studio.post(token_path + "/api/answers", json={"reader": "  Ира ", "answers": right})
    assert sent.status_code == 201
    receipt = sent.json()
    assert receipt["reader"] == "Ира" and set(receipt) == {"reader", "receipt", "closed"}  # no score to learn from
    again = studio.post(token_path + "/api/answers", json={"reader": "Ира", "answers": right})
    assert again.status_code == 409  # a reader's first answers are final
    blank = studio.post(token_path + "/api/answers", json={"reader": "   ", "answers": right})
    assert blank.status_code == 422 and "reader" in blank.json()["detail"]["msg"]
    wrong = [{"index": i, "answer": {"writer": "double", "double": "writer", "a": "b", "b": "a"}[t]}
             for i, t in truth.items()]
    assert studio.post(token_path + "/api/answers", json={"reader": "Олег", "answers": wrong}).status_code == 201
    mine = studio.get(f"{token_path}/api/receipts/{receipt['receipt']}").json()
    assert mine == {"reader": "Ира", "closed": False, "score": None}  # not until the writer closes the test
    listed = next(t for t in studio.get("/studio/api/blind-tests").json() if t["id"] == test["id"])
    assert listed["readers"] == 2 and listed["results"] is None

    closed = studio.post(f"/studio/api/blind-tests/{test['id']}/close").json()
    assert closed["status"] == "closed" and closed["seed"] == stored.seed
    assert [item["truth"] for item in closed["items"]] == [item["truth"] for item in stored.items]
    results = closed["results"]
    assert results["overall"]["accuracy"] == 0.5 and results["overall"]["chance"] == 0.5
    assert [(r["reader"], r["accuracy"]) for r in results["readers"]] == [("Ира", 1.0), ("Олег", 0.0)]
    assert results["overall"]["ci_low"] < 0.5 < results["overall"]["ci_high"]
    mine = studio.get(f"{token_path}/api/receipts/{receipt['receipt']}").json()
    assert mine["closed"] is True and mine["score"]["accuracy"] == 1.0 and mine["score"]["ci_high"] == 1.0
    reader_view = studio.get(token_path + "/api").json()
    assert reader_view["closed"] is True and reader_view["results"]["overall"]["answers"] == 2 * len(truth)
    assert "readers" not in reader_view["results"]  # no other reader named
    late = studio.post(token_path + "/api/answers", json={"reader": "Вера", "answers": right})
    assert late.status_code == 409 and "closed" in late.json()["detail"]["msg"]

    bad = studio.post(token_path + "/api/answers", json={"reader": "Ира", "answers": [{"index": 99, "answer": "a"}]})
    assert bad.status_code in (409, 422)
    assert studio.get("/blind/not-a-token/api").status_code == 404
    assert studio.get(f"{token_path}/api/receipts/guess").status_code == 404


def test_a_blind_test_takes_so_many_readers_from_one_computer(served) -> None:
    studio, server = served
    test = server.store.create_blind_test("t", "single", "c", [{"index": 0, "kind": "single", "opening": "a",
                                                               "text": "b", "truth": "writer"}], seed=1)
    answer = [{"index": 0, "answer": "writer"}]
    limit = server.settings.blind_readers_per_address
    for number in range(limit):
        assert studio.post(f"/blind/{test.token}/api/answers", json={"reader": f"r{number}", "answers": answer}) \
            .status_code == 201
    refused = studio.post(f"/blind/{test.token}/api/answers", json={"reader": "one more", "answers": answer})
    assert refused.status_code == 429 and "from this computer" in refused.json()["detail"]["msg"]


def test_an_api_key_guards_everything_but_the_page_and_a_tests_own_link(served_ws, tmp_path: Path) -> None:
    server = open_server(served_ws, api_key="secret-key-1", database=tmp_path / "s.sqlite3")
    with running_server(server) as url:
        assert httpx.get(url + "/studio/api/documents").status_code == 401
        assert httpx.get(url + "/studio/api/documents", headers={"Authorization": "Bearer wrong-key"}).status_code == 401
        auth = {"Authorization": "Bearer secret-key-1"}
        assert httpx.get(url + "/studio/api/documents", headers=auth).status_code == 200
        assert httpx.get(url + "/studio/api/documents", headers={"X-Api-Key": "secret-key-1"}).status_code == 200
        assert httpx.get(url + "/").status_code == 200 and httpx.get(url + "/static/studio.js").status_code == 200
        test = server.store.create_blind_test("t", "single", "c", [{"index": 0, "kind": "single", "opening": "a",
                                                                   "text": "b", "truth": "writer"}])
        assert httpx.get(f"{url}/blind/{test.token}/api").status_code == 200  # the link is the permission


def test_pages_of_other_sites_and_other_host_names_are_refused(studio: httpx.Client) -> None:
    """A page the writer visits may send requests to localhost (and, with DNS rebinding, read the answers)."""
    doc = new_document(studio)
    rebound = studio.get("/studio/api/documents", headers={"Host": "evil.example.com"})
    assert rebound.status_code == 403 and "localhost only" in rebound.json()["detail"]["msg"]
    assert studio.get("/studio/api/documents", headers={"Host": "localhost:5001"}).status_code == 200
    cross = studio.post(f"/studio/api/documents/{doc['id']}/undo", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    cross_kobold = studio.post("/api/extra/abort", headers={"Origin": "null"}, content=b"{}")
    assert cross_kobold.status_code == 403
    same = studio.patch(f"/studio/api/documents/{doc['id']}", json={"memory": "м"},
                        headers={"Origin": str(studio.base_url).rstrip("/")})
    assert same.status_code == 200  # the studio's own page


def test_oversized_bodies_and_ids_get_clear_errors_not_500(studio: httpx.Client) -> None:
    doc = new_document(studio)
    limit = 6 * 2_000_000 + (1 << 20)
    huge = studio.patch(f"/studio/api/documents/{doc['id']}", content=b"{" + b" " * limit + b"}",
                        headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "request body" in huge.json()["detail"]["msg"]

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(limit // (1 << 20) + 2):
            yield b" " * (1 << 20)

    streamed = studio.patch(f"/studio/api/documents/{doc['id']}", content=chunked(),
                            headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert studio.get("/studio/api/documents/99999999999999999999").status_code == 422
    assert studio.get("/studio/api/generations", params={"document": 2**64}).status_code == 422
    assert studio.get("/healthz").status_code == 200


def test_listening_beyond_loopback_needs_a_key() -> None:
    with pytest.raises(ServeError, match="API key"):
        check_binding("0.0.0.0", None)
    with pytest.raises(ServeError, match="too short"):
        check_binding("192.168.1.5", "abc")
    check_binding("0.0.0.0", "a-long-enough-key")
    check_binding("127.0.0.1", None)
    check_binding("localhost", None)
    check_binding("::1", None)


def test_a_server_killed_mid_generation_loses_nothing(served_ws) -> None:
    """`dvoinik serve` as a process, killed with SIGKILL while it writes, then started again."""
    port = free_port()
    command = [sys.executable, "-m", "dvoinik", "-w", str(served_ws.root), "serve", "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start() -> subprocess.Popen:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return process
            except httpx.TransportError:
                time.sleep(0.2)
        process.kill()
        raise AssertionError("dvoinik serve did not start: " + process.stderr.read().decode()[-2000:])

    url = f"http://127.0.0.1:{port}"
    process = start()
    try:
        doc = httpx.post(url + "/studio/api/documents", json={"title": "Не потерять", "text": "Первая строка."}).json()
        httpx.patch(f"{url}/studio/api/documents/{doc['id']}", json={"text": "Первая строка.\nВторая строка.",
                                                                     "memory": "Память."})
        with httpx.stream("POST", f"{url}/studio/api/documents/{doc['id']}/generate",
                          json={"n": 4, "max_new_tokens": 96, "guard": 2}, timeout=60) as response:
            first = next(line for line in response.iter_lines() if line.startswith("data: "))
            generation_id = json.loads(first[6:])["generation_id"]
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    finally:
        process.kill()
    process = start()
    try:
        again = httpx.get(f"{url}/studio/api/documents/{doc['id']}").json()
        assert again["text"] == "Первая строка.\nВторая строка." and again["memory"] == "Память."
        logged = httpx.get(url + "/studio/api/generations", params={"document": doc["id"]}).json()
        assert [(g["id"], g["status"]) for g in logged] == [(generation_id, "interrupted")]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_style_sliders_re_mix_the_loaded_adapters(tmp_path: Path) -> None:
    from training_fixtures import make_workspace, save_tiny_gpt2

    from dvoinik.corpus.build import load_documents
    from dvoinik.training.loop import train

    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    for run, seed in (("early", 1), ("late", 2)):
        train(ws, run=run, overrides={"base": str(base), "method": "lora", "max_steps": 2, "seed": seed})
    server = open_server(ws, style={"early": 0.5, "late": 0.5}, database=tmp_path / "s.sqlite3")
    with running_server(server) as url, httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/studio/api/info").json()
        assert info["styles"] == ["early", "late"] and info["style"] == {"early": 0.5, "late": 0.5}
        doc = new_document(client)
        body = {"n": 1, "max_new_tokens": 4, "style": {"early": 0.2, "late": 0.8}}
        done = events(client.post(f"/studio/api/documents/{doc['id']}/generate", json=body))[-1]
        assert done[0] == "done"
        logged = client.get("/studio/api/generations", params={"document": doc["id"]}).json()[0]
        assert logged["checkpoint"] == "early=0.2+late=0.8" and logged["settings"]["style"] == body["style"]
        # The next request without sliders, and any API client, gets the mix the server was started with.
        events(client.post(f"/studio/api/documents/{doc['id']}/generate", json={"n": 1, "max_new_tokens": 4}))
        client.post("/v1/completions", json={"model": "x", "prompt": "Бава", "max_tokens": 4})
        checkpoints = [g["checkpoint"] for g in client.get("/studio/api/generations").json()[:2]]
        assert checkpoints == ["early=0.5+late=0.5", "early=0.5+late=0.5"]
        unknown = client.post(f"/studio/api/documents/{doc['id']}/generate",
                              json={"n": 1, "max_new_tokens": 4, "style": {"other": 1.0}})
        assert unknown.status_code == 422 and "not among the loaded runs" in unknown.json()["detail"]["msg"]


@pytest.mark.parametrize(("path", "method", "body", "field"), [
    ("/studio/api/documents", "POST", b'{"text": "\\ud800"}', "text"),
    ("DOC", "PATCH", b'{"text": "a\\udfffb"}', "text"),
    ("DOC", "PATCH", b'{"memory": "\\ud800"}', "memory"),
    ("DOC", "PATCH", b'{"world_info": [{"keys": ["k"], "content": "\\ud800"}]}', "world_info.0.content"),
])
def test_a_lone_surrogate_is_a_422_naming_the_field(studio: httpx.Client, path: str, method: str, body: bytes,
                                                     field: str) -> None:
    doc = new_document(studio)
    url = f"/studio/api/documents/{doc['id']}" if path == "DOC" else path
    answer = studio.request(method, url, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["detail"]["msg"].startswith(f"{field}: ")
    assert "surrogate" in answer.json()["detail"]["msg"] or "unicode" in answer.json()["detail"]["msg"]
    assert studio.get(f"/studio/api/documents/{doc['id']}").json()["text"] == doc["text"]  # nothing stored


def test_choosing_twice_is_choosing_once(studio: httpx.Client) -> None:
    doc = new_document(studio)
    done = events(studio.post(f"/studio/api/documents/{doc['id']}/generate", json={"n": 2, "max_new_tokens": 4,
                                                                                 "seed": 3}))[-1][1]
    choose = f"/studio/api/generations/{done['generation_id']}/choose"
    first = studio.post(choose, json={"variant": 1})
    retried = studio.post(choose, json={"variant": 1})  # the page retried after a lost answer
    assert first.status_code == retried.status_code == 200 and retried.json() == first.json()
    assert first.json()["text"] == doc["text"] + done["variants"][1]["text"]  # appended once
    other = studio.post(choose, json={"variant": 0})
    assert other.status_code == 409 and "has its choice already" in other.json()["detail"]["msg"]
    lines = [json.loads(line) for line in studio.get("/studio/api/export/preferences.jsonl").text.splitlines()]
    mine = [line for line in lines if line["generation_id"] == done["generation_id"]]
    assert [m["chosen"] for m in mine] == [done["variants"][1]["text"]]  # the export agrees with the text


def test_pages_cannot_be_framed_and_load_nothing_from_elsewhere(studio: httpx.Client) -> None:
    for path in ("/", "/studio/api/info", "/static/studio.js"):
        headers = studio.get(path).headers
        assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"] and headers["referrer-policy"] == "no-referrer"
    assert studio.get("/docs").status_code == 404 and studio.get("/redoc").status_code == 404  # no CDN scripts here
    assert studio.get("/openapi.json").json()["info"]["title"] == "dvoinik"


def test_a_full_disk_answers_507_and_loses_nothing(served, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    studio, server = served
    doc = new_document(studio, text="Сохранено.")
    real = server.store._db

    class Full:  # the disk fills up: every write is refused, as SQLite refuses it
        def execute(self, sql, *args):
            if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(server.store, "_db", Full())
    answer = studio.patch(f"/studio/api/documents/{doc['id']}", json={"text": "Сохранено. И ещё."})
    assert answer.status_code == 507
    message = answer.json()["detail"]["msg"]
    assert "no space left on device" in message and str(server.store.path.parent) in message
    assert studio.post("/studio/api/documents", json={"text": "x"}).status_code == 507
    monkeypatch.undo()
    assert studio.get(f"/studio/api/documents/{doc['id']}").json()["text"] == "Сохранено."  # as it was
    assert studio.patch(f"/studio/api/documents/{doc['id']}", json={"text": "Сохранено. И ещё."}).status_code == 200


def test_a_damaged_or_full_studio_database_is_one_line(served_ws, tmp_path: Path, monkeypatch) -> None:
    from test_cli import assert_user_error, invoke

    garbage = served_ws.root / "studio" / "studio.sqlite3"
    backup = garbage.read_bytes() if garbage.exists() else None
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(b"this is not a database at all" * 100)
    try:
        assert_user_error(invoke("-w", served_ws.root, "serve", "--port", str(free_port())),
                          f"{garbage}: damaged file (not a studio database", "move it aside")
    finally:
        if backup is None:
            garbage.unlink()
        else:
            garbage.write_bytes(backup)
