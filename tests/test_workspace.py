"""The workspace: dvoinik.toml created, loaded, validated and edited without losing anything."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import pytest
import tomlkit

from dvoinik import workspace as wsmod
from dvoinik.workspace import (
    CONFIG_NAME,
    DEFAULT_WEIGHTS,
    CorpusSettings,
    Source,
    Workspace,
    WorkspaceError,
    add_sources,
    find_workspace,
    init_workspace,
    load_workspace,
)


@pytest.fixture
def books(tmp_path: Path) -> Path:
    """project/books/{andreev,grin,babel}/… beside project/double (the workspace folder)."""
    root = tmp_path / "project" / "books"
    for author in ("andreev", "grin", "babel"):
        (root / author).mkdir(parents=True)
        (root / author / "story.txt").write_text(f"Text by {author}.\n", encoding="utf-8")
    return root


@pytest.fixture
def ws(books: Path) -> Workspace:
    return init_workspace(books.parent / "double")


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- init


def test_init_creates_a_loadable_commented_toml(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "new" / "andreev-double")
    assert ws.root == (tmp_path / "new" / "andreev-double").resolve()
    assert ws.config_path == ws.root / CONFIG_NAME and ws.config_path.is_file()
    assert ws.name == "andreev-double" and ws.language == "ru"
    assert ws.sources == () and ws.target_author is None
    assert ws.corpus == CorpusSettings()
    assert (ws.corpus_dir, ws.tokens_dir, ws.runs_dir) == (ws.root / "corpus", ws.root / "tokens", ws.root / "runs")

    text = ws.config_path.read_text(encoding="utf-8")
    doc = tomlkit.parse(text).unwrap()
    assert doc["double"] == {"name": "andreev-double", "language": "ru"}
    # every [corpus] default is spelled out, each with a comment on its line
    defaults = {f.name: f.default for f in dataclasses.fields(CorpusSettings)}
    assert doc["corpus"] == defaults
    for key in defaults:
        line = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        assert "#" in line, line
    assert load_workspace(ws.root) == ws


def test_init_name_language_and_existing_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    ws = init_workspace(tmp_path / "here", name='Двойник "Андреева"', language="en")
    assert (ws.name, ws.language) == ('Двойник "Андреева"', "en")
    assert load_workspace(tmp_path / "here").name == 'Двойник "Андреева"'


def test_init_twice_is_an_error_and_keeps_the_file(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "d")
    ws.config_path.write_text(ws.config_path.read_text(encoding="utf-8") + "# mine\n", encoding="utf-8")
    with pytest.raises(WorkspaceError) as exc:
        init_workspace(tmp_path / "d")
    assert str(ws.config_path) in one_line(exc) and "already" in str(exc.value)
    assert ws.config_path.read_text(encoding="utf-8").endswith("# mine\n")


def test_init_on_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(WorkspaceError, match="not a folder"):
        init_workspace(tmp_path / "f")


# ---------------------------------------------------------------- find / load


def test_find_workspace_walks_up(ws: Workspace) -> None:
    deep = ws.root / "runs" / "r1" / "checkpoints"
    deep.mkdir(parents=True)
    assert find_workspace(deep) == ws.root
    assert find_workspace(ws.config_path) == ws.root


def test_find_workspace_outside_any_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as exc:
        find_workspace(tmp_path)
    assert str(tmp_path.resolve()) in one_line(exc) and "dvoinik init" in str(exc.value)


def test_load_non_workspace_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as exc:
        load_workspace(tmp_path)
    message = one_line(exc)
    assert str(tmp_path.resolve()) in message
    assert "not a dvoinik workspace (no dvoinik.toml)" in message and "-w DIR" in message


def test_load_accepts_the_toml_file_itself(ws: Workspace) -> None:
    assert load_workspace(ws.config_path) == ws


def test_malformed_toml_names_file_and_line(ws: Workspace) -> None:
    ws.config_path.write_text('[double]\nname = "x"\nlanguage = = "ru"\n', encoding="utf-8")
    with pytest.raises(WorkspaceError) as exc:
        load_workspace(ws.root)
    message = one_line(exc)
    assert f"{ws.config_path}:3:" in message and "TOML syntax error" in message


def write_config(ws: Workspace, text: str) -> None:
    ws.config_path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("corpus", "needles"),
    [
        ("sed = 1", ["[corpus]", "unknown key 'sed'"]),
        ('seed = "abc"', ["seed must be an integer", "'abc'"]),
        ("seed = true", ["seed must be an integer"]),
        ("val_fraction = 1.5", ["val_fraction must be at least 0 and below 1"]),
        ("near_duplicate_threshold = nan", ["near_duplicate_threshold must be a finite number"]),
        ("workers = -1", ["workers must be 0 or more"]),
        ("shingle_words = 2.5", ["shingle_words must be an integer"]),
    ],
)
def test_bad_corpus_values(ws: Workspace, corpus: str, needles: list[str]) -> None:
    write_config(ws, f'[double]\nname = "x"\n\n[corpus]\n{corpus}\n')
    with pytest.raises(WorkspaceError) as exc:
        load_workspace(ws.root)
    message = one_line(exc)
    assert str(ws.config_path) in message
    for needle in needles:
        assert needle in message


def test_corpus_settings_read_and_int_accepted_for_float(ws: Workspace) -> None:
    write_config(ws, "[corpus]\nseed = 7\nnear_duplicate_threshold = 1\nworkers = 2\n")
    settings = load_workspace(ws.root).corpus
    assert settings == CorpusSettings(seed=7, near_duplicate_threshold=1.0, workers=2)
    assert isinstance(settings.near_duplicate_threshold, float)


@pytest.mark.parametrize(
    ("source", "needles"),
    [
        ('path = "a"\nauthor = "A"\nrole = "hero"', ["unknown role 'hero'", "target, influence"]),
        ('path = "a"\nauthor = "A"\nweight = 0', ["weight must be a positive finite number"]),
        ('path = "a"\nauthor = "A"\nweight = -2.0', ["weight must be a positive"]),
        ('path = "a"\nauthor = "A"\nweight = nan', ["weight must be a positive finite number"]),
        ('path = "a"\nauthor = "A"\nweight = "ten"', ["weight must be a number"]),
        ('path = "a"\nauthor = "A"\nsections = "pages"', ["unknown sections mode 'pages'"]),
        ('path = "a"\nauthor = "A"\nauthr = "B"', ["unknown key 'authr'"]),
        ('path = "a"', ["[[sources]] #1", "missing author"]),
    ],
)
def test_bad_source_values(ws: Workspace, source: str, needles: list[str]) -> None:
    write_config(ws, f"[[sources]]\n{source}\n")
    with pytest.raises(WorkspaceError) as exc:
        load_workspace(ws.root)
    message = one_line(exc)
    assert str(ws.config_path) in message
    for needle in needles:
        assert needle in message


def test_two_target_authors_in_the_toml(ws: Workspace) -> None:
    write_config(
        ws,
        '[[sources]]\npath = "a"\nauthor = "A"\nrole = "target"\n\n'
        '[[sources]]\npath = "b"\nauthor = "B"\nrole = "target"\n',
    )
    with pytest.raises(WorkspaceError, match="more than one target author"):
        load_workspace(ws.root)


def test_unknown_key_in_double(ws: Workspace) -> None:
    write_config(ws, '[double]\nname = "x"\nlanguge = "ru"\n')
    with pytest.raises(WorkspaceError, match=r"\[double\]: unknown key 'languge'"):
        load_workspace(ws.root)


# ---------------------------------------------------------------- add


def test_add_target_and_influences(ws: Workspace, books: Path) -> None:
    ws, added = add_sources(ws, [books / "andreev"], author="Андреев", role="target")
    assert added == [Source(path=(books / "andreev").resolve(), author="Андреев", role="target", weight=10.0)]
    ws, added = add_sources(ws, [books / "grin", books / "grin" / "story.txt"], author="Грин")
    assert [(s.role, s.weight) for s in added] == [("influence", DEFAULT_WEIGHTS["influence"])] * 2
    ws, added = add_sources(ws, [books / "babel"], author="Бабель", weight=2.5, sections="chapters")
    assert (added[0].weight, added[0].sections) == (2.5, "chapters")

    assert ws.target_author == "Андреев"
    assert [(s.author, s.role, s.weight) for s in ws.sources] == [
        ("Андреев", "target", 10.0),
        ("Грин", "influence", 1.0),
        ("Грин", "influence", 1.0),
        ("Бабель", "influence", 2.5),
    ]
    assert load_workspace(ws.root) == ws  # what add returned is what the file says


def test_more_files_for_the_target_keep_role_and_weight(ws: Workspace, books: Path) -> None:
    ws, _ = add_sources(ws, [books / "andreev" / "story.txt"], author="Андреев", role="target", weight=5.0)
    (books / "andreev" / "more.txt").write_text("x")
    ws, added = add_sources(ws, [books / "andreev" / "more.txt"], author="Андреев")
    assert (added[0].role, added[0].weight) == ("target", 5.0)


def test_same_path_is_not_added_twice(ws: Workspace, books: Path) -> None:
    ws, added = add_sources(ws, [books / "grin", books / "grin"], author="Грин")
    assert len(added) == 1
    before = ws.config_path.read_text(encoding="utf-8")
    # the same folder, spelled differently
    ws, added = add_sources(ws, [books / "andreev" / ".." / "grin"], author="Грин")
    assert added == [] and len(ws.sources) == 1
    assert ws.config_path.read_text(encoding="utf-8") == before


def test_paths_are_stored_relative_and_survive_a_move(ws: Workspace, books: Path, tmp_path: Path) -> None:
    ws, _ = add_sources(ws, [books / "andreev"], author="Андреев", role="target")
    ws, _ = add_sources(ws, [books / "grin" / "story.txt"], author="Грин")
    doc = tomlkit.parse(ws.config_path.read_text(encoding="utf-8")).unwrap()
    assert [s["path"] for s in doc["sources"]] == ["../books/andreev", "../books/grin/story.txt"]
    assert ws.stored_path(ws.sources[0]) == "../books/andreev"

    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    shutil.move(str(books.parent), str(moved))
    ws2 = load_workspace(moved / "double")
    assert [s.path for s in ws2.sources] == [
        (moved / "books" / "andreev").resolve(),
        (moved / "books" / "grin" / "story.txt").resolve(),
    ]
    assert all(s.path.is_absolute() and s.path.exists() for s in ws2.sources)


def test_absolute_paths_in_the_toml_are_kept(ws: Workspace, books: Path) -> None:
    write_config(ws, f'[[sources]]\npath = "{(books / "grin").as_posix()}"\nauthor = "Грин"\n')
    assert load_workspace(ws.root).sources[0].path == (books / "grin").resolve()


def test_add_preserves_comments_and_other_sections(ws: Workspace, books: Path) -> None:
    text = ws.config_path.read_text(encoding="utf-8")
    text = text.replace("seed = 1234", "seed = 99  # my lucky seed")
    text = text.replace("[train]", "# training: decided with the editor\n[train]")
    text = text.replace('base = "tiny"', 'base = "ai-forever/rugpt3small_based_on_gpt2"  # small first')
    write_config(ws, text)
    ws, _ = add_sources(load_workspace(ws.root), [books / "andreev"], author="Андреев", role="target")
    write_config(ws, ws.config_path.read_text(encoding="utf-8") + "\n[notes]\nplan = \"second volume\"  # mine\n")
    ws, _ = add_sources(ws, [books / "grin"], author="Грин")

    after = ws.config_path.read_text(encoding="utf-8")
    for kept in (
        "# dvoinik workspace",
        "seed = 99  # my lucky seed",
        "# training: decided with the editor",
        'base = "ai-forever/rugpt3small_based_on_gpt2"  # small first',
        'plan = "second volume"  # mine',
        "# random seed for the validation split",
    ):
        assert kept in after
    doc = tomlkit.parse(after).unwrap()
    assert doc["train"]["base"] == "ai-forever/rugpt3small_based_on_gpt2"
    assert ws.train.base == "ai-forever/rugpt3small_based_on_gpt2"
    assert doc["notes"] == {"plan": "second volume"}
    assert [s["author"] for s in doc["sources"]] == ["Андреев", "Грин"]
    assert ws.corpus.seed == 99


def test_add_to_an_inline_sources_array(ws: Workspace, books: Path) -> None:
    write_config(ws, 'sources = [{path = "../books/grin", author = "Грин"}]\n')
    ws, added = add_sources(load_workspace(ws.root), [books / "babel"], author="Бабель")
    assert [s.author for s in load_workspace(ws.root).sources] == ["Грин", "Бабель"]


def test_add_errors(ws: Workspace, books: Path) -> None:
    ws, _ = add_sources(ws, [books / "andreev"], author="Андреев", role="target")
    before = ws.config_path.read_text(encoding="utf-8")

    def error(*args, **kwargs) -> str:
        with pytest.raises(WorkspaceError) as exc:
            add_sources(ws, *args, **kwargs)
        return one_line(exc)

    missing = books / "nobody"
    message = error([books / "grin", missing], author="Грин")
    assert str(missing) in message and "no such file or folder" in message
    assert "unknown role 'hero'" in error([books / "grin"], author="Грин", role="hero")
    for bad in (0, -1.0, math.nan, math.inf):
        assert "weight must be a positive finite number" in error([books / "grin"], author="Грин", weight=bad)
    assert "unknown sections mode 'pages'" in error([books / "grin"], author="Грин", sections="pages")
    assert "author's name must not be empty" in error([books / "grin"], author="  ")
    message = error([books / "babel"], author="Бабель", role="target")
    assert "target author is already 'Андреев'" in message and str(ws.config_path) in message
    message = error([books / "andreev" / "story.txt"], author="Грин")
    assert "already recorded for author 'Андреев'" in message
    message = error([books], author="Грин")  # a folder holding another author's texts
    assert "../books/andreev" in message
    add_sources(ws, [books / "grin"], author="Грин")
    assert "already recorded as influence" in error([books / "babel"], author="Грин", role="target")
    # nothing was written by the failed calls (only the one good add above)
    assert [s.author for s in load_workspace(ws.root).sources] == ["Андреев", "Грин"]
    assert before in ws.config_path.read_text(encoding="utf-8")


def test_a_failed_write_leaves_the_toml_as_it_was(ws: Workspace, books: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = ws.config_path.read_text(encoding="utf-8")

    def broken(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(wsmod, "atomic_write_text", broken)
    with pytest.raises(WorkspaceError, match="cannot write: Permission denied"):
        add_sources(ws, [books / "grin"], author="Грин")
    assert ws.config_path.read_text(encoding="utf-8") == before


def test_add_uses_the_file_not_a_stale_workspace(ws: Workspace, books: Path) -> None:
    stale = ws
    add_sources(ws, [books / "andreev"], author="Андреев", role="target")
    with pytest.raises(WorkspaceError, match="target author is already 'Андреев'"):
        add_sources(stale, [books / "babel"], author="Бабель", role="target")


# ---------------------------------------------------------------- [train]


def test_train_settings_are_spelled_out_and_validated(ws: Workspace) -> None:
    text = ws.config_path.read_text(encoding="utf-8")
    for field in dataclasses.fields(wsmod.TrainSettings):
        assert f"\n{field.name} = " in text  # every default written with its comment
    assert ws.train == wsmod.TrainSettings()
    write_config(ws, text.replace("gradient_checkpointing = false", "gradient_checkpointing = 1"))
    with pytest.raises(WorkspaceError, match=r"\[train\]: gradient_checkpointing must be true or false, got 1"):
        load_workspace(ws.root)
    write_config(ws, text.replace('method = "full"', 'method = "qlora"'))
    with pytest.raises(WorkspaceError, match=r"\[train\]: method must be one of: full, lora, got 'qlora'"):
        load_workspace(ws.root)


@pytest.mark.parametrize("table, cls, bad, message", [
    ("generate", wsmod.GenerateSettings, ('preset = "coherent"', 'preset = "wild"'), r"preset must be one of: coherent"),
    ("generate", wsmod.GenerateSettings, ("guard = 10", "guard = 1"), r"guard must be 0 or at least 2, got 1"),
    ("check", wsmod.CheckSettings, ("min_tokens = 50", "min_tokens = 0"), r"min_tokens must be 1 or more"),
    ("evaluate", wsmod.EvaluateSettings, ("max_extraction_share = 0.05", "max_extraction_share = 2.0"),
     r"max_extraction_share must be between 0 and 1"),
    ("serve", wsmod.ServeSettings, ("port = 5001", "port = 0"), r"port must be between 1 and 65535"),
    ("serve", wsmod.ServeSettings, ("queue_size = 8", "queue_size = 0"), r"queue_size must be between 1 and 1000"),
    ("interview", wsmod.InterviewSettings, ('frame = "auto"', 'frame = "poem"'), r"frame must be one of: auto, dialogue"),
    ("interview", wsmod.InterviewSettings, ('question = ""', 'question = "— вопрос"'),
     r"question must be empty or a text with \{question\} in it"),
    ("dpo", wsmod.DpoSettings, ("beta = 0.1", "beta = 0.0"), r"beta must be above 0"),
    ("dpo", wsmod.DpoSettings, ("held_out = 0.2", "held_out = 1.0"), r"held_out must be at least 0 and below 1"),
])
def test_later_stages_settings_are_spelled_out_and_validated(ws: Workspace, table: str, cls: type, bad: tuple,
                                                             message: str) -> None:
    text = ws.config_path.read_text(encoding="utf-8")
    section = text.split(f"[{table}]\n", 1)[1].split("\n[", 1)[0]
    for field in dataclasses.fields(cls):
        assert f"{field.name} = " in section  # every default written, with its comment
    assert getattr(ws, table) == cls()
    assert bad[0] in text
    write_config(ws, text.replace(bad[0], bad[1]))
    with pytest.raises(WorkspaceError, match=rf"\[{table}\]: {message}"):
        load_workspace(ws.root)


def test_flags_override_settings_as_toml_values() -> None:
    values = wsmod.parse_assignments(["learning_rate=3e-4", "base=ai-forever/rugpt3small", "compile=true",
                                      "lora_targets=q_proj,v_proj"])
    assert values == {"learning_rate": 3e-4, "base": "ai-forever/rugpt3small", "compile": True,
                      "lora_targets": "q_proj,v_proj"}
    settings = wsmod.with_overrides(wsmod.TrainSettings(), values, "--set")
    assert settings.learning_rate == 3e-4 and settings.compile is True
    with pytest.raises(WorkspaceError, match="--set: unknown key 'lr'"):
        wsmod.with_overrides(wsmod.TrainSettings(), {"lr": 1.0}, "--set")


def test_write_settings_keeps_comments(ws: Workspace) -> None:
    updated = wsmod.write_settings(ws, "train", {"max_steps": 77})
    text = ws.config_path.read_text(encoding="utf-8")
    assert updated.train.max_steps == 77 and "max_steps = 77" in text and "# random seed for the validation" in text
    with pytest.raises(WorkspaceError, match="max_steps must be 1 or more"):
        wsmod.write_settings(ws, "train", {"max_steps": 0})
    assert load_workspace(ws.root).train.max_steps == 77  # nothing written on a bad value


def test_a_path_that_is_not_utf8_is_recorded_byte_for_byte(ws: Workspace, books: Path) -> None:
    import os

    weird = books / "andreev" / os.fsdecode("Глава 100%".encode("cp1251") + b".txt")
    weird.write_text("Текст.\n", encoding="utf-8")
    updated, added = add_sources(ws, [weird], author="Андреев")
    assert [s.path for s in added] == [weird.resolve()]
    text = ws.config_path.read_bytes().decode("utf-8")  # TOML is UTF-8: the bytes are %-escaped, "%" too
    assert 'path_bytes = "../books/andreev/%C3%EB%E0%E2%E0 100%25.txt"' in text
    assert load_workspace(ws.root) == updated and updated.sources[0].path == weird.resolve()
    doc = tomlkit.parse(text)
    doc["sources"][0]["path"] = "../books"
    ws.config_path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    with pytest.raises(WorkspaceError, match=r"give path \(or, for a name that is not UTF-8, path_bytes\), not both"):
        load_workspace(ws.root)
