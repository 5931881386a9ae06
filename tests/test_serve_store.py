"""The studio's database: history with undo/redo and folded autosaves, the log, blind answers, crash safety."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dvoinik.serve import store as store_module
from dvoinik.serve.store import BlindAnswer, Conflict, DocumentState, Locked, NotFound, NothingToDo, Store, WorldInfo


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_create_edit_undo_redo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("Повесть", DocumentState(text="Начало."))
    assert (doc.revision, doc.to_json()["can_undo"]) == (1, False)

    monkeypatch.setattr(store_module, "FOLD_SECONDS", 0.0)  # every edit is its own step
    store.update_document(doc.id, state=replace(doc.state, text="Начало. Дальше."))
    third = store.update_document(doc.id, state=DocumentState(text="Начало. Дальше. Ещё.", memory="Зима."))
    assert third.revision == 3

    back = store.step(doc.id, -1)
    assert back.state.text == "Начало. Дальше." and back.state.memory == ""
    assert back.to_json()["can_redo"] is True
    assert store.step(doc.id, +1).state.memory == "Зима."
    store.step(doc.id, -1)
    store.step(doc.id, -1)
    with pytest.raises(NothingToDo):
        store.step(doc.id, -1)

    # A change after an undo drops the steps ahead of it.
    branched = store.update_document(doc.id, state=DocumentState(text="Иначе."))
    assert (branched.revision, branched.revisions) == (2, 2)
    with pytest.raises(NothingToDo):
        store.step(doc.id, +1)


def test_edits_close_together_fold_into_one_step(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("t")
    for text in ("О", "Он", "Она", "Она шла"):  # autosave while typing
        doc = store.update_document(doc.id, state=DocumentState(text=text))
    assert doc.revision == 2 and doc.state.text == "Она шла"
    appended = store.update_document(doc.id, state=DocumentState(text="Она шла домой."), kind="append")
    assert appended.revision == 3  # a picked variant is always its own step
    typed = store.update_document(doc.id, state=DocumentState(text="Она шла домой. И"))
    assert typed.revision == 4
    assert store.step(doc.id, -1).state.text == "Она шла домой."


def test_an_unchanged_state_makes_no_step_and_title_and_settings_are_not_history(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("t", DocumentState(text="x"))
    doc = store.update_document(doc.id, title="Новое имя", settings={"preset": "nucleus"}, state=DocumentState(text="x"))
    assert (doc.title, doc.settings, doc.revision) == ("Новое имя", {"preset": "nucleus"}, 1)


def test_world_info_round_trips(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    entry = WorldInfo(("Анна", "Аня"), "Анна — сестра рассказчика.", ("сестр",), always=False)
    doc = store.create_document("t", DocumentState(world_info=(entry,), note_depth=1))
    again = store.document(doc.id)
    assert again.state.world_info == (entry,) and again.state.note_depth == 1


def test_listing_deleting_and_missing_documents(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    first = store.create_document("один", DocumentState(text="12345"))
    store.create_document("два")
    listed = store.documents()
    assert [d["title"] for d in listed] == ["два", "один"] and listed[1]["chars"] == 5
    store.delete_document(first.id)
    with pytest.raises(NotFound):
        store.document(first.id)
    with pytest.raises(NotFound):
        store.delete_document(first.id)


def test_a_killed_server_leaves_its_running_generations_interrupted_and_keeps_every_edit(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = Store.open(path)
    doc = store.create_document("t", DocumentState(text="Всё, что написано."))
    running = store.log_start("studio", "prompt", {"n": 3}, 7, "run/checkpoint-1", doc.id)
    # No close(): the process dies here. A second connection sees every committed change.
    again = Store.open(path)
    assert again.document(doc.id).state.text == "Всё, что написано."
    assert again.generation(running.id).status == "interrupted"


def test_the_log_records_variants_and_the_choice(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("t")
    entry = store.log_start("studio", "Начало", {"preset": "coherent"}, 5, "run/checkpoint-2", doc.id)
    store.log_finish(entry.id, "done", [{"text": " а"}, {"text": " б"}])
    store.log_choice(entry.id, 1, " б!")
    logged = store.generation(entry.id)
    assert (logged.status, logged.chosen, logged.chosen_text, len(logged.variants)) == ("done", 1, " б!", 2)
    assert [g.id for g in store.generations(doc.id, chosen_only=True)] == [entry.id]
    store.delete_document(doc.id)  # the log outlives the document (its preference data is still good)
    assert store.generation(entry.id).document_id is None


def test_a_readers_first_answers_are_final(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    test = store.create_blind_test("t", "single", "c", [{"index": 0, "kind": "single", "truth": "writer"}])
    store.add_answers(test.id, [BlindAnswer("Ира", 0, "double", False)])
    with pytest.raises(Conflict, match="already taken"):  # no second try after seeing a score
        store.add_answers(test.id, [BlindAnswer("Ира", 0, "writer", True)])
    store.add_answers(test.id, [BlindAnswer("Олег", 0, "double", False)])
    assert sorted((a.reader, a.correct) for a in store.answers(test.id)) == [("Ира", False), ("Олег", False)]
    assert store.blind_test(token=test.token).id == test.id


def test_a_second_server_cannot_open_a_studio_in_use(tmp_path: Path) -> None:
    first = Store.open(tmp_path / "s.sqlite3", exclusive=True)
    with pytest.raises(Locked, match="another dvoinik serve"):
        Store.open(tmp_path / "s.sqlite3", exclusive=True)
    first.close()
    Store.open(tmp_path / "s.sqlite3", exclusive=True).close()  # free again once the first has closed


def test_a_conflicting_edit_is_refused_even_when_the_other_folded_into_one_step(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("t", DocumentState(text="a"))
    first = store.update_document(doc.id, state=DocumentState(text="ab"), base_version=doc.version)
    folded = store.update_document(doc.id, state=DocumentState(text="abc"), base_version=first.version)
    assert folded.revision == first.revision and folded.version == first.version + 1
    with pytest.raises(Conflict, match=f"version {folded.version}, not {first.version}"):
        store.update_document(doc.id, state=DocumentState(text="stale tab"), base_version=first.version)
    assert store.document(doc.id).state.text == "abc"
    renamed = store.update_document(doc.id, title="новое", base_version=first.version)  # not content: no conflict
    assert renamed.title == "новое" and renamed.version == folded.version
    assert store.step(doc.id, -1).version == folded.version + 1  # an undo moves the content on too


def test_an_undo_step_never_holds_more_than_a_minute_of_typing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(store_module.time, "time", lambda: clock[0])
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("t")
    for second in range(0, 600, 3):  # ten minutes of steady typing, an autosave every 3 s
        clock[0] = 1000.0 + second
        doc = store.update_document(doc.id, state=DocumentState(text="x" * (second + 1)))
    assert doc.revision >= 10  # a step per minute or so, not one for the whole ten minutes
    assert len(doc.state.text) - len(store.step(doc.id, -1).state.text) <= 63  # a minute of typing (and one save)
