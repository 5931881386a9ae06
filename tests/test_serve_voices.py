"""Voices through every door: OpenAI model names `dvoinik:<voice>` and a `voice` field, KoboldAI's and the studio's."""

from __future__ import annotations

import httpx
import pytest
from serving_compat import QUICK_TRAIN, compat_server
from training_fixtures import make_workspace

from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.variants import generate
from dvoinik.training.loop import train

PROMPT = "Ба ве го да ле"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The micro model, four steps with voices: enough to carry markers, which is all these tests need."""
    ws = make_workspace(tmp_path_factory.mktemp("voices"), {**QUICK_TRAIN, "voices": True})
    train(ws, run="voices")
    with compat_server(ws) as (url, server), httpx.Client(base_url=url, timeout=60) as client:
        yield client, server


def test_models_are_the_checkpoint_and_one_per_voice(served) -> None:
    client, server = served
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert ids == [server.engine.double.checkpoint, "dvoinik:Цель", "dvoinik:Влияние"]
    assert client.get("/v1/models/dvoinik:Влияние").json()["id"] == "dvoinik:Влияние"
    assert client.get("/v1/models/dvoinik:Толстой").status_code == 404


def test_a_voice_model_writes_in_that_voice_and_the_log_says_so(served) -> None:
    client, server = served
    answer = client.post("/v1/completions", json={"model": "dvoinik:Влияние", "prompt": PROMPT, "max_tokens": 6,
                                                  "temperature": 0}).json()
    expected = generate(server.engine.double, PROMPT, decoding_for("greedy", max_new_tokens=6),
                        guard=server.generate.guard, voice={"Влияние": 1.0})
    assert answer["model"] == "dvoinik:Влияние" and answer["choices"][0]["text"] == expected.variants[0].text
    assert server.store.generations(limit=1)[0].settings["voice"] == {"Влияние": 1.0}
    mixed = client.post("/v1/completions", json={"model": "any", "prompt": PROMPT, "max_tokens": 4, "temperature": 0,
                                                 "voice": "Цель=1,Влияние=3"})
    assert mixed.status_code == 200
    assert server.store.generations(limit=1)[0].settings["voice"] == {"Цель": 0.25, "Влияние": 0.75}
    assert server.store.generations(limit=1)[0].variants[0]["text"] == generate(
        server.engine.double, PROMPT, decoding_for("greedy", max_new_tokens=4), guard=server.generate.guard,
        voice={"Цель": 0.25, "Влияние": 0.75}).variants[0].text


def test_a_voice_the_double_lacks_is_refused_by_name(served) -> None:
    client, _ = served
    refused = client.post("/v1/completions", json={"model": "dvoinik:Толстой", "prompt": PROMPT, "max_tokens": 2})
    assert refused.status_code == 400 and "no voice 'Толстой'" in refused.json()["error"]["message"]
    refused = client.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 2, "voice": {"Толстой": 1}})
    assert refused.status_code == 422 and "no voice" in refused.json()["detail"]["msg"]


def test_kobold_and_the_studio_take_a_voice(served) -> None:
    client, server = served
    answer = client.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 4, "voice": "Влияние"})
    assert answer.status_code == 200 and server.store.generations(limit=1)[0].settings["voice"] == {"Влияние": 1.0}

    info = client.get("/studio/api/info").json()
    assert info["voices"] == ["Цель", "Влияние"]
    doc = client.post("/studio/api/documents", json={"title": "Голоса", "text": PROMPT}).json()
    stream = client.post(f"/studio/api/documents/{doc['id']}/generate",
                         json={"n": 2, "max_new_tokens": 4, "voice": {"Цель": 0.5, "Влияние": 0.5}})
    assert stream.status_code == 200 and "event: done" in stream.text
    entry = server.store.generations(limit=1)[0]
    assert entry.source == "studio" and entry.settings["voice"] == {"Цель": 0.5, "Влияние": 0.5}
    bad = client.post(f"/studio/api/documents/{doc['id']}/generate", json={"voice": {"Толстой": 1}})
    assert bad.status_code == 422
