"""The studio's SQLite database: documents and their history, the generation log, blind tests and answers,
interviews.

    store = Store.open(workspace.root / "studio" / "studio.sqlite3")

SQLite in WAL mode with `synchronous=FULL`: every change is one committed transaction,
so a server killed mid-generation loses nothing the writer typed (the page also keeps a
draft until the save is acknowledged). A generation is logged as "running" when it starts
and completed when it ends; rows left "running" by a killed server read "interrupted".

A document's history is a line of revisions (`head` marks the current one); undo and
redo move `head`; a new change after an undo drops the revisions ahead of it, as every
editor does. Edits arriving less than `FOLD_SECONDS` apart fold into one revision, so
autosave while typing makes one undo step, not one per keystroke; a step stops folding
after `FOLD_SPAN_SECONDS`, so an undo never takes back more than about a minute of typing.

The history is kept as differences: the document's current state is stored whole (in
`documents.current`), and each revision stores only what changed from the one before it
(per text field the replaced span, `[start, removed, inserted]`; other fields old and new
value). An undo applies the head's difference backwards, a redo the next one forwards: one
step is one difference, whatever the length of the book, and a novel of 314,000 characters
with 100 edits takes 1.2 MB instead of 57 MB. Revisions written by an older version (a
whole state each, `revisions.state`) are read as they are.

A database from an older version gains its new columns when it is opened (`ADDED_COLUMNS`).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dvoinik.faults import DiskFullError, damaged, disk_full, is_disk_full, is_no_access, no_access

FOLD_SECONDS = 5.0  # edits this close together are one undo step...
FOLD_SPAN_SECONDS = 60.0  # ...until the step is this old: an hour of steady typing is not one step
DEFAULT_NOTE_DEPTH = 3
FREE_STUDIO_SPACE = "the studio keeps the writer's texts there; nothing unsaved is lost: the page keeps it as a draft"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    settings TEXT NOT NULL DEFAULT '{}',
    head INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,  -- moves on with every change of the content, folded edits and undo too
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
    document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,  -- when the revision began
    updated_at REAL NOT NULL,  -- its last folded edit
    PRIMARY KEY (document_id, number)
);
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY,
    document_id INTEGER REFERENCES documents(id) ON DELETE SET NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    status TEXT NOT NULL,
    prompt TEXT NOT NULL,
    settings TEXT NOT NULL,
    seed INTEGER,
    checkpoint TEXT NOT NULL,
    variants TEXT NOT NULL DEFAULT '[]',
    chosen INTEGER,
    chosen_text TEXT
);
CREATE INDEX IF NOT EXISTS generations_by_document ON generations(document_id, created_at);
CREATE TABLE IF NOT EXISTS blind_tests (
    id INTEGER PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    kind TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    items TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blind_readers (
    id INTEGER PRIMARY KEY,
    test_id INTEGER NOT NULL REFERENCES blind_tests(id) ON DELETE CASCADE,
    reader TEXT NOT NULL,
    receipt TEXT NOT NULL UNIQUE,  -- the reader's proof of who they are, to see their score when the test closes
    address TEXT NOT NULL,  -- where the answers came from (the per-address limit)
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS blind_answers (
    id INTEGER PRIMARY KEY,
    test_id INTEGER NOT NULL REFERENCES blind_tests(id) ON DELETE CASCADE,
    reader TEXT NOT NULL,
    item INTEGER NOT NULL,
    answer TEXT NOT NULL,
    correct INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS interviews (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    frame TEXT NOT NULL,  -- JSON: how questions are put (generation/interview.py Frame)
    settings TEXT NOT NULL DEFAULT '{}',  -- the voice and sampler of its answers
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS interview_turns (
    interview_id INTEGER NOT NULL REFERENCES interviews(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    generation_id TEXT,  -- the answer's entry in the generation log
    finish_reason TEXT NOT NULL,
    copy TEXT,  -- JSON: the answer's copy score
    created_at REAL NOT NULL,
    PRIMARY KEY (interview_id, number)
);
"""


# Columns added after the first release, with their types: added to an older database when it is opened.
ADDED_COLUMNS = (
    ("documents", "current", "TEXT"),  # the state at head, whole (NULL: read the head revision's state)
    ("revisions", "delta", "TEXT"),  # the difference from the revision before (NULL: `state` holds the whole state)
    ("generations", "chosen_at", "REAL"),  # when the writer chose (or discarded): a choice is made once
    ("blind_tests", "seed", "INTEGER"),  # the random seed that shuffled it (the writer's to see, never a reader's)
    ("blind_tests", "closed_at", "REAL"),  # when the writer closed it: no more answers, scores shown to readers
)


class NotFound(Exception):
    """No such document, generation or test."""


class NothingToDo(Exception):
    """Nothing to undo or redo."""


class Locked(Exception):
    """Another server has the database open."""


class Conflict(Exception):
    """The document changed since the caller read it; or a reader answers a blind test a second time."""


class TooMany(Exception):
    """A limit on a blind test's readers is reached (answered with 429)."""


@dataclass(frozen=True)
class WorldInfo:
    keys: tuple[str, ...]
    content: str
    secondary_keys: tuple[str, ...] = ()
    always: bool = False

    @staticmethod
    def from_json(value: dict) -> WorldInfo:
        return WorldInfo(tuple(value.get("keys", ())), value.get("content", ""),
                         tuple(value.get("secondary_keys", ())), bool(value.get("always", False)))

    def to_json(self) -> dict:
        return {"keys": list(self.keys), "secondary_keys": list(self.secondary_keys), "content": self.content,
                "always": self.always}


@dataclass(frozen=True)
class DocumentState:
    """What the history keeps of a document: everything the writer wrote for it."""

    text: str = ""
    memory: str = ""
    authors_note: str = ""
    note_depth: int = DEFAULT_NOTE_DEPTH
    world_info: tuple[WorldInfo, ...] = ()

    @staticmethod
    def from_json(value: dict) -> DocumentState:
        return DocumentState(value.get("text", ""), value.get("memory", ""), value.get("authors_note", ""),
                             int(value.get("note_depth", DEFAULT_NOTE_DEPTH)),
                             tuple(WorldInfo.from_json(w) for w in value.get("world_info", ())))

    def to_json(self) -> dict:
        return {"text": self.text, "memory": self.memory, "authors_note": self.authors_note,
                "note_depth": self.note_depth, "world_info": [w.to_json() for w in self.world_info]}


@dataclass(frozen=True)
class Document:
    id: int
    title: str
    state: DocumentState
    settings: dict
    revision: int
    revisions: int
    created_at: float
    updated_at: float
    version: int = 1

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title, **self.state.to_json(), "settings": self.settings,
                "revision": self.revision, "version": self.version, "can_undo": self.revision > 1, "can_redo": self.revision < self.revisions,
                "created_at": iso(self.created_at), "updated_at": iso(self.updated_at)}


@dataclass
class LoggedGeneration:
    id: str
    document_id: int | None
    source: str  # "studio", "kobold", "openai", "blind"
    created_at: float
    status: str  # running, done, aborted, failed, interrupted
    prompt: str
    settings: dict
    seed: int | None
    checkpoint: str
    variants: list = field(default_factory=list)
    chosen: int | None = None
    chosen_text: str | None = None
    finished_at: float | None = None

    def to_json(self) -> dict:
        out = asdict(self)
        out["created_at"] = iso(self.created_at)
        out["finished_at"] = iso(self.finished_at) if self.finished_at else None
        return out


@dataclass(frozen=True)
class BlindTest:
    id: int
    token: str
    title: str
    kind: str
    checkpoint: str
    items: list  # each with its truth
    created_at: float
    seed: int | None = None
    closed_at: float | None = None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None


@dataclass(frozen=True)
class BlindAnswer:
    reader: str
    item: int
    answer: str
    correct: bool


def new_generation_id() -> str:
    return "gen-" + secrets.token_hex(8)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Store:
    """One connection, used under a lock (requests come from several threads)."""

    def __init__(self, connection: sqlite3.Connection, path: Path | None = None) -> None:
        self._db = connection
        self._lock = threading.RLock()
        self._lock_file: Any = None
        self.id = ""
        self.path = path
        self.interviews = InterviewLog(self)

    @staticmethod
    def open(path: Path | str, exclusive: bool = False) -> Store:
        """Open (or create) the database; `exclusive`: refuse if another server holds it (Locked)."""
        lock = None
        if str(path) != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                if exclusive:
                    lock = _lock_beside(Path(path))
            except OSError as exc:
                if is_disk_full(exc):
                    raise disk_full(Path(path).parent, FREE_STUDIO_SPACE) from None
                if is_no_access(exc):
                    raise no_access(Path(path).parent, "opening the studio's folder") from None
                raise
        try:
            db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        except sqlite3.OperationalError as exc:
            if lock is not None:
                lock.close()
            if is_no_access(exc):
                raise no_access(path, "opening the studio's database") from None
            raise
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(SCHEMA)
            _add_columns(db)
            store = Store(db, Path(path) if str(path) != ":memory:" else None)
            with store._transaction() as tx:
                # A server killed mid-generation left these.
                tx.execute("UPDATE generations SET status = 'interrupted' WHERE status = 'running'")
                # The database's own id: the page keys its drafts by it, so two workspaces served on one port never mix.
                tx.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (secrets.token_hex(8),))
                store.id = tx.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()[0]
        except (sqlite3.DatabaseError, DiskFullError) as exc:
            db.close()
            if lock is not None:
                lock.close()
            if isinstance(exc, DiskFullError) or is_disk_full(exc):
                raise disk_full(Path(path).parent, FREE_STUDIO_SPACE) from None
            if is_no_access(exc):
                raise no_access(path, "opening the studio's database") from None
            raise damaged(path, f"not a studio database: {exc}", "move it aside (nothing else reads it) and "
                                "`dvoinik serve` starts a new, empty studio") from None
        store._lock_file = lock
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction; on a full disk, DiskFullError (and nothing of it written)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and is_disk_full(exc):
                    raise disk_full(self.path.parent if self.path else Path("."), FREE_STUDIO_SPACE) from exc
                raise

    # ---------------------------------------------------------------- documents

    def create_document(self, title: str, state: DocumentState = DocumentState(), settings: dict | None = None) -> Document:
        now = time.time()
        with self._transaction() as tx:
            cursor = tx.execute("INSERT INTO documents (title, settings, head, created_at, updated_at, current) "
                                "VALUES (?, ?, 1, ?, ?, ?)",
                                (title, json.dumps(settings or {}, ensure_ascii=False), now, now, _dump(state)))
            doc_id = int(cursor.lastrowid)
            # The first revision needs no difference: nothing comes before it to undo to.
            tx.execute("INSERT INTO revisions (document_id, number, kind, state, delta, created_at, updated_at) "
                       "VALUES (?, 1, 'create', '', '{}', ?, ?)", (doc_id, now, now))
        return self.document(doc_id)

    def documents(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT d.id, d.title, d.updated_at, COALESCE(d.current, r.state) AS state FROM documents d "
                "JOIN revisions r ON r.document_id = d.id AND r.number = d.head "
                "ORDER BY d.updated_at DESC, d.id DESC").fetchall()
        return [{"id": r["id"], "title": r["title"], "chars": len(json.loads(r["state"]).get("text", "")),
                 "updated_at": iso(r["updated_at"])} for r in rows]

    def document(self, doc_id: int) -> Document:
        with self._lock:
            row = self._db.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone()
            if row is None:
                raise NotFound(f"no document {doc_id}")
            state = _current(self._db, row)
            last = self._db.execute("SELECT MAX(number) FROM revisions WHERE document_id = ?", (doc_id,)).fetchone()[0]
        return Document(row["id"], row["title"], DocumentState.from_json(state), json.loads(row["settings"]),
                        row["head"], last, row["created_at"], row["updated_at"], row["version"])

    def update_document(self, doc_id: int, *, title: str | None = None, settings: dict | None = None,
                        state: DocumentState | None = None, kind: str = "edit",
                        base_version: int | None = None) -> Document:
        """Rename, store sampler settings, or record a new state (a history step unless it folds into the last edit).

        With `base_version`, a new state is refused (Conflict) unless the document's content
        is still at that version: another tab, or an undo, changed it since the caller read it.
        (Versions move on with every change of the content, folded edits included; revisions
        count undo steps.)
        """
        with self._transaction() as tx:
            self._update(tx, doc_id, title, settings, state, kind, base_version)
        return self.document(doc_id)

    def _update(self, tx: sqlite3.Connection, doc_id: int, title: str | None, settings: dict | None,
                state: DocumentState | None, kind: str, base_version: int | None) -> None:
        now = time.time()
        row = tx.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise NotFound(f"no document {doc_id}")
        head = row["head"]
        if state is not None and base_version is not None and base_version != row["version"]:
            raise Conflict(f"document {doc_id} is at version {row['version']}, not {base_version}: it was "
                           "changed elsewhere (another tab, an undo); reload it")
        if title is not None:
            tx.execute("UPDATE documents SET title = ? WHERE id = ?", (title, doc_id))
        if settings is not None:
            tx.execute("UPDATE documents SET settings = ? WHERE id = ?", (json.dumps(settings, ensure_ascii=False), doc_id))
        if state is not None:
            current = _current(tx, row)
            new = state.to_json()
            if DocumentState.from_json(current) != state:
                revision = tx.execute("SELECT kind, created_at, updated_at FROM revisions "
                                      "WHERE document_id = ? AND number = ?", (doc_id, head)).fetchone()
                newest = tx.execute("SELECT MAX(number) FROM revisions WHERE document_id = ?", (doc_id,)).fetchone()[0]
                fold = kind == "edit" and revision["kind"] == "edit" and head == newest and \
                    now - revision["updated_at"] < FOLD_SECONDS and now - revision["created_at"] < FOLD_SPAN_SECONDS
                if fold:  # the head's difference now leads from the revision before it to the new state
                    before = _state_at(tx, doc_id, head - 1, head, current)
                    tx.execute("UPDATE revisions SET state = '', delta = ?, updated_at = ? "
                               "WHERE document_id = ? AND number = ?",
                               (json.dumps(state_delta(before, new), ensure_ascii=False), now, doc_id, head))
                else:
                    tx.execute("DELETE FROM revisions WHERE document_id = ? AND number > ?", (doc_id, head))
                    tx.execute("INSERT INTO revisions (document_id, number, kind, state, delta, created_at, updated_at) "
                               "VALUES (?, ?, ?, '', ?, ?, ?)",
                               (doc_id, head + 1, kind, json.dumps(state_delta(current, new), ensure_ascii=False),
                                now, now))
                    head += 1
                tx.execute("UPDATE documents SET head = ?, current = ?, version = version + 1 WHERE id = ?",
                           (head, json.dumps(new, ensure_ascii=False), doc_id))
        tx.execute("UPDATE documents SET updated_at = ? WHERE id = ?", (now, doc_id))

    def step(self, doc_id: int, direction: int) -> Document:
        """Undo (-1) or redo (+1): one difference applied to the current state."""
        with self._transaction() as tx:
            row = tx.execute("SELECT * FROM documents WHERE id = ?", (doc_id,)).fetchone()
            if row is None:
                raise NotFound(f"no document {doc_id}")
            newest = tx.execute("SELECT MAX(number) FROM revisions WHERE document_id = ?", (doc_id,)).fetchone()[0]
            target = row["head"] + direction
            if not 1 <= target <= newest:
                raise NothingToDo("nothing to undo" if direction < 0 else "nothing to redo")
            state = _state_at(tx, doc_id, target, row["head"], _current(tx, row))
            # The revision undone to must not fold the next keystrokes into itself.
            tx.execute("UPDATE revisions SET updated_at = 0 WHERE document_id = ? AND number = ?", (doc_id, target))
            tx.execute("UPDATE documents SET head = ?, current = ?, version = version + 1, updated_at = ? WHERE id = ?",
                       (target, json.dumps(state, ensure_ascii=False), time.time(), doc_id))
        return self.document(doc_id)

    def delete_document(self, doc_id: int) -> None:
        with self._transaction() as tx:
            if tx.execute("DELETE FROM documents WHERE id = ?", (doc_id,)).rowcount == 0:
                raise NotFound(f"no document {doc_id}")

    # ---------------------------------------------------------------- the generation log

    def log_start(self, source: str, prompt: str, settings: dict, seed: int | None, checkpoint: str,
                  document_id: int | None = None, generation_id: str | None = None) -> LoggedGeneration:
        entry = LoggedGeneration(generation_id or new_generation_id(), document_id, source, time.time(), "running", prompt, settings,
                                 seed, checkpoint)
        with self._transaction() as tx:
            tx.execute("INSERT INTO generations (id, document_id, source, created_at, status, prompt, settings, seed, "
                       "checkpoint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (entry.id, document_id, source, entry.created_at, entry.status, prompt,
                        json.dumps(settings, ensure_ascii=False), seed, checkpoint))
        return entry

    def log_finish(self, generation_id: str, status: str, variants: list[dict], checkpoint: str | None = None) -> None:
        with self._transaction() as tx:
            tx.execute("UPDATE generations SET status = ?, variants = ?, finished_at = ?, "
                       "checkpoint = COALESCE(?, checkpoint) WHERE id = ?",
                       (status, json.dumps(variants, ensure_ascii=False), time.time(), checkpoint, generation_id))

    def log_choice(self, generation_id: str, chosen: int | None, chosen_text: str | None) -> None:
        with self._transaction() as tx:
            tx.execute("UPDATE generations SET chosen = ?, chosen_text = ?, chosen_at = ? WHERE id = ?",
                       (chosen, chosen_text, time.time(), generation_id))

    def choose(self, generation_id: str, chosen: int | None, chosen_text: str | None) -> tuple[Document, bool]:
        """The writer's pick of a generation's variants (None: all discarded), made once; (document, made now).

        The choice and the text appended to the document are one transaction. The same choice
        again (a retried request) changes nothing and answers as the first did; another choice
        of a generation already decided is a Conflict: the log and the text must agree.
        """
        with self._transaction() as tx:
            row = tx.execute("SELECT document_id, chosen, chosen_text, chosen_at FROM generations WHERE id = ?",
                             (generation_id,)).fetchone()
            if row is None:
                raise NotFound(f"no generation {generation_id}")
            if row["document_id"] is None:
                raise NotFound(f"generation {generation_id} belongs to no document")
            if row["chosen_at"] is not None or row["chosen"] is not None:
                if (row["chosen"], row["chosen_text"]) != (chosen, chosen_text):
                    what = f"variant {row['chosen']}" if row["chosen"] is not None else "discarding them all"
                    raise Conflict(f"generation {generation_id} has its choice already ({what}); undo in the "
                                   "document to take it back")
                made = False
            else:
                tx.execute("UPDATE generations SET chosen = ?, chosen_text = ?, chosen_at = ? WHERE id = ?",
                           (chosen, chosen_text, time.time(), generation_id))
                if chosen is not None:
                    doc = tx.execute("SELECT * FROM documents WHERE id = ?", (row["document_id"],)).fetchone()
                    state = DocumentState.from_json(_current(tx, doc))
                    self._update(tx, doc["id"], None, None, replace(state, text=state.text + (chosen_text or "")),
                                 "append", None)
                made = True
        return self.document(row["document_id"]), made

    def generation(self, generation_id: str) -> LoggedGeneration:
        with self._lock:
            row = self._db.execute("SELECT * FROM generations WHERE id = ?", (generation_id,)).fetchone()
        if row is None:
            raise NotFound(f"no generation {generation_id}")
        return _logged(row)

    def generations(self, document_id: int | None = None, limit: int = 50, chosen_only: bool = False) -> list[LoggedGeneration]:
        where, args = [], []
        if document_id is not None:
            where.append("document_id = ?")
            args.append(document_id)
        if chosen_only:
            where.append("chosen IS NOT NULL")
        sql = "SELECT * FROM generations" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [_logged(r) for r in rows]

    # ---------------------------------------------------------------- blind tests

    def create_blind_test(self, title: str, kind: str, checkpoint: str, items: list[dict],
                          seed: int | None = None) -> BlindTest:
        now, token = time.time(), secrets.token_urlsafe(16)
        with self._transaction() as tx:
            cursor = tx.execute("INSERT INTO blind_tests (token, title, kind, checkpoint, items, created_at, seed) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (token, title, kind, checkpoint, json.dumps(items, ensure_ascii=False), now, seed))
        return BlindTest(int(cursor.lastrowid), token, title, kind, checkpoint, items, now, seed)

    def close_blind_test(self, test_id: int) -> BlindTest:
        """Close a test for good: no more answers; its scores are shown (to readers too). Closing twice is closing."""
        with self._transaction() as tx:
            if tx.execute("UPDATE blind_tests SET closed_at = COALESCE(closed_at, ?) WHERE id = ?",
                          (time.time(), test_id)).rowcount == 0:
                raise NotFound(f"no blind test {test_id}")
        return self.blind_test(test_id)

    def blind_readers(self, test_id: int) -> int:
        """How many readers have answered."""
        with self._lock:
            return self._db.execute("SELECT COUNT(DISTINCT reader) FROM blind_answers WHERE test_id = ?",
                                    (test_id,)).fetchone()[0]

    def blind_receipt(self, test_id: int, receipt: str) -> str:
        """The reader a receipt was given to (NotFound for any other string)."""
        with self._lock:
            row = self._db.execute("SELECT reader FROM blind_readers WHERE test_id = ? AND receipt = ?",
                                   (test_id, receipt)).fetchone()
        if row is None:
            raise NotFound("no such receipt for this test")
        return row["reader"]

    def blind_tests(self) -> list[BlindTest]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM blind_tests ORDER BY created_at DESC, id DESC").fetchall()
        return [_blind(r) for r in rows]

    def blind_test(self, test_id: int | None = None, token: str | None = None) -> BlindTest:
        with self._lock:
            if token is not None:
                row = self._db.execute("SELECT * FROM blind_tests WHERE token = ?", (token,)).fetchone()
            else:
                row = self._db.execute("SELECT * FROM blind_tests WHERE id = ?", (test_id,)).fetchone()
        if row is None:
            raise NotFound("no such blind test")
        return _blind(row)

    def delete_blind_test(self, test_id: int) -> None:
        with self._transaction() as tx:
            if tx.execute("DELETE FROM blind_tests WHERE id = ?", (test_id,)).rowcount == 0:
                raise NotFound(f"no blind test {test_id}")

    def add_answers(self, test_id: int, answers: list[BlindAnswer], address: str = "",
                    max_readers: int | None = None, max_per_address: int | None = None) -> str:
        """Record one reader's answers and return their receipt; a reader's first submission is final.

        Conflict: the name has answered already, or the test is closed. TooMany: the test has
        `max_readers` readers, or `max_per_address` of them came from `address`.
        """
        now, receipt = time.time(), secrets.token_urlsafe(16)
        with self._transaction() as tx:
            test = tx.execute("SELECT closed_at FROM blind_tests WHERE id = ?", (test_id,)).fetchone()
            if test is None:
                raise NotFound(f"no blind test {test_id}")
            if test["closed_at"] is not None:
                raise Conflict("this test is closed: its author takes no more answers")
            for reader in {a.reader for a in answers}:
                if tx.execute("SELECT 1 FROM blind_answers WHERE test_id = ? AND reader = ?", (test_id, reader)).fetchone():
                    raise Conflict(f"{reader!r} has already taken this test; another reader needs another name")
            readers = tx.execute("SELECT COUNT(DISTINCT reader) FROM blind_answers WHERE test_id = ?",
                                 (test_id,)).fetchone()[0]
            if max_readers is not None and readers >= max_readers:
                raise TooMany(f"this test has its {max_readers} readers already")
            from_here = tx.execute("SELECT COUNT(*) FROM blind_readers WHERE test_id = ? AND address = ?",
                                   (test_id, address)).fetchone()[0]
            if max_per_address is not None and from_here >= max_per_address:
                raise TooMany(f"{max_per_address} readers have answered this test from this computer already")
            for reader in {a.reader for a in answers}:
                tx.execute("INSERT INTO blind_readers (test_id, reader, receipt, address, created_at) "
                           "VALUES (?, ?, ?, ?, ?)", (test_id, reader, receipt, address, now))
            tx.executemany("INSERT INTO blind_answers (test_id, reader, item, answer, correct, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(test_id, a.reader, a.item, a.answer, int(a.correct), now) for a in answers])
        return receipt

    def answers(self, test_id: int) -> list[BlindAnswer]:
        with self._lock:
            rows = self._db.execute("SELECT reader, item, answer, correct FROM blind_answers WHERE test_id = ? "
                                    "ORDER BY id", (test_id,)).fetchall()
        return [BlindAnswer(r["reader"], r["item"], r["answer"], bool(r["correct"])) for r in rows]


@dataclass(frozen=True)
class InterviewTurn:
    number: int
    question: str
    answer: str
    finish_reason: str
    generation_id: str | None = None
    copy: dict | None = None
    created_at: float = 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "created_at": iso(self.created_at)}


@dataclass(frozen=True)
class Interview:
    id: int
    title: str
    frame: dict
    settings: dict
    turns: tuple[InterviewTurn, ...]
    created_at: float
    updated_at: float

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title, "frame": self.frame, "settings": self.settings,
                "turns": [t.to_json() for t in self.turns], "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


class InterviewLog:
    """The studio's interviews (the «Интервью» tab), in the store's database and under its lock."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, title: str, frame: dict, settings: dict | None = None) -> Interview:
        now = time.time()
        with self._store._transaction() as tx:
            cursor = tx.execute("INSERT INTO interviews (title, frame, settings, created_at, updated_at) "
                                "VALUES (?, ?, ?, ?, ?)", (title, json.dumps(frame, ensure_ascii=False),
                                                           json.dumps(settings or {}, ensure_ascii=False), now, now))
        return self.get(int(cursor.lastrowid))

    def list(self) -> list[dict]:
        with self._store._lock:
            rows = self._store._db.execute(
                "SELECT i.id, i.title, i.updated_at, COUNT(t.number) AS turns FROM interviews i LEFT JOIN "
                "interview_turns t ON t.interview_id = i.id GROUP BY i.id ORDER BY i.updated_at DESC, i.id DESC"
            ).fetchall()
        return [{"id": r["id"], "title": r["title"], "turns": r["turns"], "updated_at": iso(r["updated_at"])}
                for r in rows]

    def get(self, interview_id: int) -> Interview:
        with self._store._lock:
            row = self._store._db.execute("SELECT * FROM interviews WHERE id = ?", (interview_id,)).fetchone()
            if row is None:
                raise NotFound(f"no interview {interview_id}")
            turns = self._store._db.execute("SELECT * FROM interview_turns WHERE interview_id = ? ORDER BY number",
                                            (interview_id,)).fetchall()
        return Interview(row["id"], row["title"], json.loads(row["frame"]), json.loads(row["settings"]),
                         tuple(InterviewTurn(t["number"], t["question"], t["answer"], t["finish_reason"],
                                             t["generation_id"], json.loads(t["copy"]) if t["copy"] else None,
                                             t["created_at"]) for t in turns),
                         row["created_at"], row["updated_at"])

    def update(self, interview_id: int, *, title: str | None = None, frame: dict | None = None,
               settings: dict | None = None) -> Interview:
        with self._store._transaction() as tx:
            if tx.execute("SELECT 1 FROM interviews WHERE id = ?", (interview_id,)).fetchone() is None:
                raise NotFound(f"no interview {interview_id}")
            for column, value in (("title", title), ("frame", frame), ("settings", settings)):
                if value is not None:
                    stored = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                    tx.execute(f"UPDATE interviews SET {column} = ? WHERE id = ?", (stored, interview_id))
            tx.execute("UPDATE interviews SET updated_at = ? WHERE id = ?", (time.time(), interview_id))
        return self.get(interview_id)

    def add_turn(self, interview_id: int, question: str, answer: str, finish_reason: str,
                 generation_id: str | None = None, copy: dict | None = None) -> InterviewTurn:
        now = time.time()
        with self._store._transaction() as tx:
            if tx.execute("SELECT 1 FROM interviews WHERE id = ?", (interview_id,)).fetchone() is None:
                raise NotFound(f"no interview {interview_id}")
            number = tx.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM interview_turns WHERE interview_id = ?",
                                (interview_id,)).fetchone()[0]
            tx.execute("INSERT INTO interview_turns (interview_id, number, question, answer, generation_id, "
                       "finish_reason, copy, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (interview_id, number, question, answer, generation_id, finish_reason,
                        json.dumps(copy, ensure_ascii=False) if copy is not None else None, now))
            tx.execute("UPDATE interviews SET updated_at = ? WHERE id = ?", (now, interview_id))
        return InterviewTurn(number, question, answer, finish_reason, generation_id, copy, now)

    def remove_last_turn(self, interview_id: int) -> Interview:
        with self._store._transaction() as tx:
            if tx.execute("DELETE FROM interview_turns WHERE interview_id = ? AND number = (SELECT MAX(number) FROM "
                          "interview_turns WHERE interview_id = ?)", (interview_id, interview_id)).rowcount == 0:
                raise NothingToDo(f"interview {interview_id} has no turn to take back")
            tx.execute("UPDATE interviews SET updated_at = ? WHERE id = ?", (time.time(), interview_id))
        return self.get(interview_id)

    def delete(self, interview_id: int) -> None:
        with self._store._transaction() as tx:
            if tx.execute("DELETE FROM interviews WHERE id = ?", (interview_id,)).rowcount == 0:
                raise NotFound(f"no interview {interview_id}")


def _lock_beside(path: Path) -> Any:
    """An exclusive lock on `path.lock`, held while the returned file is open (and by nobody after a crash).

    Without it a second server would mark the first one's running generations as interrupted.
    """
    handle = open(path.with_name(path.name + ".lock"), "a+")  # noqa: SIM115 - held for the store's life
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one server per workspace is on the user
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise Locked(f"{path}: another dvoinik serve has this studio open; stop it first") from None
    return handle


def _dump(state: DocumentState) -> str:
    return json.dumps(state.to_json(), ensure_ascii=False)


def _add_columns(db: sqlite3.Connection) -> None:
    """Give a database made by an older version the columns added since (existing rows keep their data)."""
    for table, column, kind in ADDED_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _current(db: sqlite3.Connection, document: sqlite3.Row) -> dict:
    """The state at the document's head: stored whole, or (written by an older version) in the head revision."""
    if document["current"] is not None:
        return json.loads(document["current"])
    row = db.execute("SELECT state FROM revisions WHERE document_id = ? AND number = ?",
                     (document["id"], document["head"])).fetchone()
    return json.loads(row["state"])


def _state_at(db: sqlite3.Connection, doc_id: int, target: int, head: int, current: dict) -> dict:
    """The state at revision `target`, one step from `head` (whose state is `current`) or written whole."""
    row = db.execute("SELECT state, delta FROM revisions WHERE document_id = ? AND number = ?",
                     (doc_id, target)).fetchone()
    if row["delta"] is None:  # an older version's revision: the whole state
        return json.loads(row["state"])
    if target == head + 1:  # redo: the next revision's difference, forwards
        return apply_delta(current, json.loads(row["delta"]), forward=True)
    if target == head - 1:  # undo: the head's difference, backwards
        step = db.execute("SELECT state, delta FROM revisions WHERE document_id = ? AND number = ?",
                          (doc_id, head)).fetchone()
        if step["delta"] is None:
            raise ValueError(f"document {doc_id}: revision {target} has no state of its own")  # never written so
        return apply_delta(current, json.loads(step["delta"]), forward=False)
    raise ValueError("one step at a time")


# ---------------------------------------------------------------- differences


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over slice comparisons: C speed on a novel)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def splice(old: str, new: str) -> list:
    """`[start, removed, inserted]`: `new` is `old` with `removed` at `start` replaced by `inserted`."""
    start = _common_prefix(old, new)
    rest_old, rest_new = old[start:], new[start:]
    end = _common_prefix(rest_old[::-1], rest_new[::-1])
    return [start, rest_old[: len(rest_old) - end], rest_new[: len(rest_new) - end]]


def state_delta(old: dict, new: dict) -> dict:
    """What changed from state `old` to state `new` (both as `DocumentState.to_json` gives them)."""
    delta: dict[str, Any] = {}
    for key in new.keys() | old.keys():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, str) and isinstance(after, str):
            delta[key] = splice(before, after)
        else:
            delta[key] = {"from": before, "to": after}
    return delta


def apply_delta(state: dict, delta: dict, forward: bool) -> dict:
    """`state` moved one revision on (`forward`) or back by `delta`."""
    out = dict(state)
    for key, change in delta.items():
        if isinstance(change, list):
            start, removed, inserted = change
            old, new = (removed, inserted) if forward else (inserted, removed)
            text = out.get(key, "")
            out[key] = text[:start] + new + text[start + len(old):]
        else:
            out[key] = change["to"] if forward else change["from"]
    return out


def _logged(row: sqlite3.Row) -> LoggedGeneration:
    return LoggedGeneration(row["id"], row["document_id"], row["source"], row["created_at"], row["status"], row["prompt"],
                            json.loads(row["settings"]), row["seed"], row["checkpoint"], json.loads(row["variants"]),
                            row["chosen"], row["chosen_text"], row["finished_at"])


def _blind(row: sqlite3.Row) -> BlindTest:
    return BlindTest(row["id"], row["token"], row["title"], row["kind"], row["checkpoint"], json.loads(row["items"]),
                     row["created_at"], row["seed"], row["closed_at"])
