"""The studio's interviews over HTTP: frames, a conversation of several turns kept in the store, guarded answers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from serving import running_server

from dvoinik.serve.launch import open_server
from dvoinik.serve.store import Store


@pytest.fixture(scope="module")
def studio(served_ws, tmp_path_factory: pytest.TempPathFactory):
    server = open_server(served_ws, database=tmp_path_factory.mktemp("interview") / "studio.sqlite3")
    with running_server(server) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client, server


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    out = []
    for block in response.text.split("\n\n"):
        lines = block.strip().splitlines()
        if lines:
            name = next((line[7:] for line in lines if line.startswith("event: ")), "message")
            out.append((name, json.loads("\n".join(line[6:] for line in lines if line.startswith("data: ")))))
    return out


def test_frames_are_the_workspaces_and_the_built_in_ones(studio) -> None:
    client, server = studio
    frames = client.get("/studio/api/interview/frames").json()
    assert frames["default"]["name"] == "letter"  # the synthetic target writes no dialogue
    assert frames["default"] == server.interview.to_json()
    assert set(frames["builtin"]) == {"dialogue", "quotes", "letter", "diary"} == set(frames["names"])
    assert frames["builtin"]["dialogue"]["question"] == "— {question}\n\n"


def test_an_interview_of_several_turns_is_kept_and_each_answer_is_in_the_log(studio) -> None:
    client, server = studio
    interview = client.post("/studio/api/interviews", json={"title": "Первое"}).json()
    assert interview["frame"]["name"] == "letter" and interview["turns"] == []
    questions = ["Ба ве го?", "Да ле ми?", "Но пу ра?"]
    for number, question in enumerate(questions, start=1):
        answer = client.post(f"/studio/api/interviews/{interview['id']}/ask",
                             json={"question": question, "max_new_tokens": 16, "seed": number})
        stream = events(answer)
        start, done = stream[0][1], stream[-1][1]
        assert stream[0][0] == "start" and stream[-1][0] == "done"
        assert start["prompt"].endswith(f"Мне пишут: «{question}»\n\n")
        assert start["turns_kept"] + start["turns_dropped"] == number - 1  # the oldest go when 128 tokens are full
        turn = done["turn"]
        assert turn["number"] == number and turn["question"] == question and turn["answer"].strip()
        assert "\n\n" not in turn["answer"]  # cut where the letter's paragraph ends
        assert turn["copy"]["tokens"] < server.generate.guard  # the originality guard held
        entry = server.store.generation(done["generation_id"])
        assert entry.source == "interview" and entry.settings["interview"] == interview["id"]
        if number > 1:  # the latest earlier turn is in the prompt, in the frame
            assert start["turns_kept"] >= 1 and f"«{questions[number - 2]}»" in start["prompt"]
    kept = client.get(f"/studio/api/interviews/{interview['id']}").json()
    assert [t["question"] for t in kept["turns"]] == questions
    assert client.get("/studio/api/interviews").json()[0] == {**client.get("/studio/api/interviews").json()[0],
                                                              "id": interview["id"], "turns": 3}
    taken = client.post(f"/studio/api/interviews/{interview['id']}/undo").json()
    assert [t["question"] for t in taken["turns"]] == questions[:2]


def test_the_frame_is_editable_and_checked(studio) -> None:
    client, _ = studio
    dialogue = {"name": "dialogue", "question": "— {question}\n\n", "answer": "— ", "end": "\n",
                "preamble": "Разговор у реки."}
    interview = client.post("/studio/api/interviews", json={"title": "С тире", "frame": dialogue}).json()
    answer = events(client.post(f"/studio/api/interviews/{interview['id']}/ask",
                                json={"question": "Где лодка?", "max_new_tokens": 12, "seed": 1}))
    assert answer[0][1]["prompt"] == "Разговор у реки.\n\n— Где лодка?\n\n—"
    assert "\n" not in answer[-1][1]["turn"]["answer"]  # a dialogue line ends at the line's end
    bad = client.patch(f"/studio/api/interviews/{interview['id']}", json={"frame": {**dialogue, "question": "— Q"}})
    assert bad.status_code == 422 and "{question}" in bad.text
    renamed = client.patch(f"/studio/api/interviews/{interview['id']}", json={"title": "У реки"}).json()
    assert renamed["title"] == "У реки" and renamed["frame"]["preamble"] == "Разговор у реки."
    assert client.post("/studio/api/interviews/999999/ask", json={"question": "?"}).status_code == 404
    assert client.post(f"/studio/api/interviews/{interview['id']}/ask", json={"question": ""}).status_code == 422
    assert client.delete(f"/studio/api/interviews/{interview['id']}").status_code == 204
    assert client.get(f"/studio/api/interviews/{interview['id']}").status_code == 404


def test_a_studio_database_from_before_interviews_opens(tmp_path: Path) -> None:
    """Migration: an existing studio.sqlite3 without the interview tables gains them and keeps its documents."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT NOT NULL, settings TEXT NOT NULL DEFAULT '{}',
            head INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE revisions (document_id INTEGER NOT NULL, number INTEGER NOT NULL, kind TEXT NOT NULL,
            state TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (document_id, number));
        INSERT INTO documents VALUES (1, 'Старый', '{}', 1, 1, 0, 0);
        INSERT INTO revisions VALUES (1, 1, 'create', '{"text": "Было."}', 0, 0);
    """)
    db.commit()
    db.close()
    store = Store.open(path)
    try:
        assert store.document(1).state.text == "Было."
        interview = store.interviews.create("Новое", {"name": "letter"})
        store.interviews.add_turn(interview.id, "Вопрос?", "Ответ.", "stop")
        assert [t.answer for t in store.interviews.get(interview.id).turns] == ["Ответ."]
    finally:
        store.close()
