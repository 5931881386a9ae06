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


# ---------------------------------------------------------------- history as differences


def novel(chars: int, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    words = "он она сказал тихо дорога река зима окно свет ночь утро дом сад".split()
    text, out = 0, []
    while text < chars:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(5, 14))).capitalize() + ". "
        out.append(sentence)
        text += len(sentence)
    return "".join(out)[:chars]


def stored_history_bytes(store: Store) -> int:
    return store._db.execute("SELECT SUM(LENGTH(CAST(state AS BLOB)) + LENGTH(CAST(COALESCE(delta, '') AS BLOB))) "
                             "FROM revisions").fetchone()[0]


def test_history_is_kept_as_differences_and_undo_redo_stay_exact(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    monkeypatch.setattr(store_module, "FOLD_SECONDS", 0.0)  # every edit is its own step
    store = Store.open(tmp_path / "s.sqlite3")
    text = novel(200_000)
    doc = store.create_document("Роман", DocumentState(text=text))
    rng = random.Random(3)
    states = [doc.state]
    for edit in range(40):  # edits anywhere in the book: a word put in, a sentence cut, memory and notes
        at = rng.randrange(len(text))
        text = text[:at] + f" правка{edit}" + text[at + rng.randrange(0, 60):]
        state = DocumentState(text=text, memory=f"память {edit % 3}", note_depth=edit % 4)
        states.append(store.update_document(doc.id, state=state).state)
    assert stored_history_bytes(store) < 50_000  # whole states would be 41 × 0.37 MB
    for back in reversed(states[:-1]):  # every undo gives back exactly what was there
        assert store.step(doc.id, -1).state == back
    for forward in states[1:]:
        assert store.step(doc.id, +1).state == forward
    store.step(doc.id, -1)
    branched = store.update_document(doc.id, state=DocumentState(text="Иначе."))  # a change after an undo
    assert store.step(doc.id, -1).state == states[-2] and store.step(doc.id, +1).state == branched.state


def test_a_folded_edit_keeps_its_difference_from_the_step_before(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("t", DocumentState(text="Начало."))
    store.update_document(doc.id, state=DocumentState(text="Начало. Он"))
    store.update_document(doc.id, state=DocumentState(text="Начало. Он шёл.", authors_note="Тихо."))  # folds
    assert store.step(doc.id, -1).state == DocumentState(text="Начало.")
    assert store.step(doc.id, +1).state == DocumentState(text="Начало. Он шёл.", authors_note="Тихо.")


OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (id INTEGER PRIMARY KEY, title TEXT NOT NULL, settings TEXT NOT NULL DEFAULT '{}',
    head INTEGER NOT NULL, version INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE revisions (document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    number INTEGER NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, PRIMARY KEY (document_id, number));
CREATE TABLE generations (id TEXT PRIMARY KEY, document_id INTEGER REFERENCES documents(id) ON DELETE SET NULL,
    source TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL, status TEXT NOT NULL, prompt TEXT NOT NULL,
    settings TEXT NOT NULL, seed INTEGER, checkpoint TEXT NOT NULL, variants TEXT NOT NULL DEFAULT '[]',
    chosen INTEGER, chosen_text TEXT);
CREATE TABLE blind_tests (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, title TEXT NOT NULL, kind TEXT NOT NULL,
    checkpoint TEXT NOT NULL, items TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE blind_answers (id INTEGER PRIMARY KEY, test_id INTEGER NOT NULL REFERENCES blind_tests(id)
    ON DELETE CASCADE, reader TEXT NOT NULL, item INTEGER NOT NULL, answer TEXT NOT NULL, correct INTEGER NOT NULL,
    created_at REAL NOT NULL);
"""


def test_a_studio_from_the_previous_version_opens_with_its_documents_and_history(tmp_path: Path) -> None:
    import json
    import sqlite3

    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    states = [DocumentState(text="Раз."), DocumentState(text="Раз. Два."), DocumentState(text="Раз. Два. Три.")]
    old.execute("INSERT INTO documents VALUES (1, 'Старый', '{}', 2, 3, 1.0, 3.0)")  # undone once: head 2 of 3
    for number, state in enumerate(states, start=1):
        old.execute("INSERT INTO revisions VALUES (1, ?, 'edit', ?, 1.0, 1.0)",
                    (number, json.dumps(state.to_json(), ensure_ascii=False)))
    old.execute("INSERT INTO generations VALUES ('gen-1', 1, 'studio', 1.0, 2.0, 'done', 'p', '{}', 5, 'c', ?, 0, ' а')",
                (json.dumps([{"text": " а"}]),))
    old.execute("INSERT INTO blind_tests VALUES (1, 'tok', 't', 'single', 'c', '[]', 1.0)")
    old.commit()
    old.close()

    store = Store.open(path)
    doc = store.document(1)
    assert (doc.title, doc.state, doc.revision, doc.revisions) == ("Старый", states[1], 2, 3)
    assert store.documents()[0]["chars"] == len(states[1].text)
    assert store.step(1, -1).state == states[0] and store.step(1, +1).state == states[1]
    assert store.step(1, +1).state == states[2]
    store.step(1, -1)
    new = store.update_document(1, state=DocumentState(text="Раз. Два. Иначе."), kind="append")
    assert (new.revision, new.revisions) == (3, 3)
    assert store.step(1, -1).state == states[1] and store.step(1, +1).state == new.state
    assert store.generation("gen-1").chosen == 0  # the log, with its choice, is kept
    test = store.blind_test(1)
    assert (test.token, test.closed, test.seed) == ("tok", False, None)
    with pytest.raises(Conflict, match="has its choice already"):  # chosen before: still chosen
        store.choose("gen-1", 1, " б")


# ---------------------------------------------------------------- choosing, once


def test_a_choice_is_made_once_and_a_retry_changes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s.sqlite3")
    doc = store.create_document("t", DocumentState(text="Начало."))
    entry = store.log_start("studio", "Начало.", {}, 1, "c", doc.id)
    store.log_finish(entry.id, "done", [{"text": " а"}, {"text": " б"}])
    picked, made = store.choose(entry.id, 1, " б")
    assert made and picked.state.text == "Начало. б"
    again, made = store.choose(entry.id, 1, " б")  # the same request, retried
    assert not made and again.state.text == "Начало. б" and again.revision == picked.revision
    with pytest.raises(Conflict, match=r"has its choice already \(variant 1\)"):
        store.choose(entry.id, 0, " а")
    assert store.document(doc.id).state.text == "Начало. б"
    discarded = store.log_start("studio", "x", {}, 1, "c", doc.id)
    assert store.choose(discarded.id, None, None)[1] and not store.choose(discarded.id, None, None)[1]
    with pytest.raises(Conflict, match="discarding them all"):
        store.choose(discarded.id, 0, " а")


# ---------------------------------------------------------------- blind tests: closed, receipts, limits


def test_a_blind_test_closes_for_good_and_limits_its_readers(tmp_path: Path) -> None:
    from dvoinik.serve.store import TooMany

    store = Store.open(tmp_path / "s.sqlite3")
    test = store.create_blind_test("t", "single", "c", [{"index": 0, "kind": "single", "truth": "writer"}], seed=77)
    assert store.blind_test(test.id).seed == 77 and not test.closed
    receipt = store.add_answers(test.id, [BlindAnswer("Ира", 0, "double", False)], "10.0.0.1", 3, 2)
    assert store.blind_receipt(test.id, receipt) == "Ира"
    store.add_answers(test.id, [BlindAnswer("Олег", 0, "writer", True)], "10.0.0.1", 3, 2)
    with pytest.raises(TooMany, match="2 readers have answered this test from this computer"):
        store.add_answers(test.id, [BlindAnswer("Петя", 0, "writer", True)], "10.0.0.1", 3, 2)
    store.add_answers(test.id, [BlindAnswer("Петя", 0, "writer", True)], "10.0.0.2", 3, 2)
    with pytest.raises(TooMany, match="has its 3 readers"):
        store.add_answers(test.id, [BlindAnswer("Аня", 0, "writer", True)], "10.0.0.3", 3, 2)
    assert store.blind_readers(test.id) == 3
    closed = store.close_blind_test(test.id)
    assert closed.closed and store.close_blind_test(test.id).closed_at == closed.closed_at
    with pytest.raises(Conflict, match="closed"):
        store.add_answers(test.id, [BlindAnswer("Вера", 0, "writer", True)], "10.0.0.4")
    with pytest.raises(NotFound):
        store.blind_receipt(test.id, "guess")


def test_opening_without_permission_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database or folder this account may not write: one line naming it, not a traceback (root ignores chmod,
    so the refusals are the ones the system would raise)."""
    import sqlite3

    from dvoinik.faults import NoAccessError

    def readonly(db):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store_module, "_add_columns", readonly)
    with pytest.raises(NoAccessError, match="s.sqlite3: permission denied while opening the studio's database"):
        Store.open(tmp_path / "s.sqlite3", exclusive=True)
    monkeypatch.undo()
    Store.open(tmp_path / "s.sqlite3", exclusive=True).close()  # the lock was let go

    def refused(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(store_module.sqlite3, "connect", refused)
    with pytest.raises(NoAccessError, match="t.sqlite3: permission denied"):
        Store.open(tmp_path / "t.sqlite3", exclusive=True)
    monkeypatch.undo()

    def no_folder(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", no_folder)
    with pytest.raises(NoAccessError, match="studio: permission denied while opening the studio's folder"):
        Store.open(tmp_path / "studio" / "s.sqlite3")


def test_opening_on_a_full_disk_or_a_damaged_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from dvoinik.faults import DamagedFileError, DiskFullError

    def full(db):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store_module, "_add_columns", full)
    with pytest.raises(DiskFullError, match=f"{tmp_path}: no space left on device"):
        Store.open(tmp_path / "s.sqlite3", exclusive=True)
    monkeypatch.undo()
    Store.open(tmp_path / "s.sqlite3", exclusive=True).close()  # the lock was let go
    (tmp_path / "bad.sqlite3").write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(DamagedFileError, match="bad.sqlite3: damaged file \\(not a studio database"):
        Store.open(tmp_path / "bad.sqlite3")
