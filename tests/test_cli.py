"""The command line: init and add, and every user mistake as one red line with exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit
from synthetic import synthetic_prose
from typer.testing import CliRunner

from dvoinik import __version__
from dvoinik.cli import app
from dvoinik.workspace import load_workspace

runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})


@pytest.fixture
def books(tmp_path: Path) -> Path:
    root = tmp_path / "books"
    for author in ("andreev", "grin", "babel"):
        (root / author).mkdir(parents=True)
        (root / author / "story.txt").write_text(f"Text by {author}.\n", encoding="utf-8")
    return root


@pytest.fixture
def double(tmp_path: Path, books: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An initialised workspace at tmp/double, made the current folder."""
    result = runner.invoke(app, ["init", str(tmp_path / "double")])
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path / "double")
    return tmp_path / "double"


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *needles: str) -> str:
    """Exit code 2, exactly one line on stderr, "error: …" naming what went wrong, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------- happy paths


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"dvoinik {__version__}"


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "init" in result.output and "add" in result.output and "--workspace" in result.output
    assert "Traceback" not in result.output


def test_init_creates_workspace_and_says_what_next(tmp_path: Path) -> None:
    result = invoke("init", tmp_path / "d", "--name", "Андреев-2", "--language", "ru")
    assert result.exit_code == 0, result.output
    ws = load_workspace(tmp_path / "d")
    assert (ws.name, ws.language, ws.sources) == ("Андреев-2", "ru", ())
    assert "dvoinik.toml" in result.stdout and "Андреев-2" in result.stdout
    assert "add PATH" in result.stdout and "--author" in result.stdout


def test_init_defaults_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert invoke("init").exit_code == 0
    assert load_workspace(tmp_path / "here").name == "here"


def test_add_target_and_influences_prints_the_table(double: Path, books: Path) -> None:
    result = invoke("add", books / "andreev", "--author", "Андреев", "--role", "target")
    assert result.exit_code == 0, result.output
    result = invoke("add", books / "grin", books / "babel", "--author", "Грин", "--weight", "1.5")
    assert result.exit_code == 0, result.output
    for shown in ("Андреев", "Грин", "target", "influence", "../books/andreev", "../books/babel", "1.5", "10"):
        assert shown in result.stdout, shown

    ws = load_workspace(double)
    assert ws.target_author == "Андреев"
    assert [(s.author, s.role, s.weight) for s in ws.sources] == [
        ("Андреев", "target", 10.0),
        ("Грин", "influence", 1.5),
        ("Грин", "influence", 1.5),
    ]
    doc = tomlkit.parse((double / "dvoinik.toml").read_text(encoding="utf-8")).unwrap()
    assert [s["path"] for s in doc["sources"]] == ["../books/andreev", "../books/grin", "../books/babel"]


def test_add_reports_a_path_already_recorded(double: Path, books: Path) -> None:
    assert invoke("add", books / "grin", "--author", "Грин").exit_code == 0
    result = invoke("add", books / "grin", "--author", "Грин")
    assert result.exit_code == 0
    assert "already recorded" in result.stdout and "skipped" in result.stdout
    assert len(load_workspace(double).sources) == 1


def test_add_from_a_subfolder_finds_the_workspace(double: Path, books: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (double / "notes" / "deep").mkdir(parents=True)
    monkeypatch.chdir(double / "notes" / "deep")
    assert invoke("add", books / "grin", "--author", "Грин").exit_code == 0
    assert [s.author for s in load_workspace(double).sources] == ["Грин"]


def test_workspace_option_chooses_the_workspace(tmp_path: Path, books: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("init", tmp_path / "d").exit_code == 0
    monkeypatch.chdir(tmp_path)  # not inside a workspace
    result = invoke("-w", tmp_path / "d", "add", "books/grin", "--author", "Грин")
    assert result.exit_code == 0, result.output
    assert load_workspace(tmp_path / "d").sources[0].path == (books / "grin").resolve()


def test_add_keeps_comments_and_other_tables(double: Path, books: Path) -> None:
    config = double / "dvoinik.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n# later stage\n[studio]\nport = 5001  # keep me\n", encoding="utf-8")
    assert invoke("add", books / "andreev", "--author", "Андреев", "--role", "target").exit_code == 0
    text = config.read_text(encoding="utf-8")
    assert "# later stage" in text and "port = 5001  # keep me" in text
    assert tomlkit.parse(text).unwrap()["studio"] == {"port": 5001}


# ---------------------------------------------------------------- user mistakes


def test_init_twice(double: Path) -> None:
    assert_user_error(invoke("init", double), str(double / "dvoinik.toml"), "already")


def test_add_missing_path(double: Path, books: Path) -> None:
    assert_user_error(invoke("add", books / "nobody", "--author", "X"), str(books / "nobody"), "no such file")
    assert load_workspace(double).sources == ()


def test_add_unknown_role(double: Path, books: Path) -> None:
    assert_user_error(invoke("add", books / "grin", "--author", "Грин", "--role", "hero"), "unknown role 'hero'")


@pytest.mark.parametrize("weight", ["0", "-1", "nan", "inf"])
def test_add_non_positive_or_nan_weight(double: Path, books: Path, weight: str) -> None:
    assert_user_error(
        invoke("add", books / "grin", "--author", "Грин", "--weight", weight), "weight must be a positive finite number"
    )
    assert load_workspace(double).sources == ()


def test_add_weight_that_is_not_a_number(double: Path, books: Path) -> None:
    assert_user_error(invoke("add", books / "grin", "--author", "Грин", "--weight", "ten"), "--weight", "dvoinik add --help")


def test_add_without_author(double: Path, books: Path) -> None:
    assert_user_error(invoke("add", books / "grin"), "--author")


def test_unknown_command() -> None:
    assert_user_error(invoke("frobnicate"), "frobnicate")


def test_add_second_target_author(double: Path, books: Path) -> None:
    assert invoke("add", books / "andreev", "--author", "Андреев", "--role", "target").exit_code == 0
    assert_user_error(
        invoke("add", books / "babel", "--author", "Бабель", "--role", "target"),
        "target author is already 'Андреев'",
        str(double / "dvoinik.toml"),
    )
    # more files for the same target author are fine
    (books / "andreev2").mkdir()
    assert invoke("add", books / "andreev2", "--author", "Андреев", "--role", "target").exit_code == 0


def test_add_outside_a_workspace(tmp_path: Path, books: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(
        invoke("add", books / "grin", "--author", "Грин"),
        str(tmp_path.resolve()),
        "not inside a dvoinik workspace",
        "dvoinik init",
    )


def test_workspace_option_pointing_to_a_non_workspace(tmp_path: Path, books: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_user_error(
        invoke("-w", tmp_path / "empty", "add", books / "grin", "--author", "Грин"),
        str((tmp_path / "empty").resolve()),
        "not a dvoinik workspace (no dvoinik.toml)",
    )


def test_malformed_toml(double: Path, books: Path) -> None:
    (double / "dvoinik.toml").write_text('[double]\nname = "x"\n[corpus\nseed = 1\n', encoding="utf-8")
    assert_user_error(
        invoke("add", books / "grin", "--author", "Грин"), f"{double / 'dvoinik.toml'}:3:", "TOML syntax error"
    )


def test_unknown_corpus_key(double: Path, books: Path) -> None:
    config = double / "dvoinik.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("seed = ", "seeed = "), encoding="utf-8")
    assert_user_error(invoke("add", books / "grin", "--author", "Грин"), "[corpus]", "unknown key 'seeed'")


def test_long_messages_stay_on_one_line(double: Path, books: Path) -> None:
    deep = books.joinpath(*["a-rather-long-folder-name"] * 8)
    narrow = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "40"})
    result = narrow.invoke(app, ["add", str(deep), "--author", "Грин"])
    assert_user_error(result, str(deep))


# ---------------------------------------------------------------- the installed console script


def test_console_script_end_to_end(tmp_path: Path, books: Path) -> None:
    script = shutil.which("dvoinik", path=str(Path(sys.executable).parent)) or shutil.which("dvoinik")
    if script is None:
        pytest.skip("the dvoinik console script is not installed (pip install -e .)")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([script, *map(str, args)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    done = run("init", "double")
    assert done.returncode == 0, done.stderr
    done = run("-w", "double", "add", "books/andreev", "--author", "Андреев", "--role", "target")
    assert done.returncode == 0, done.stderr
    assert "Андреев" in done.stdout and "../books/andreev" in done.stdout
    assert load_workspace(tmp_path / "double").target_author == "Андреев"

    done = run("add", "books/grin", "--author", "Грин")  # tmp_path is not a workspace
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not inside a dvoinik workspace" in lines[0]


# ---------------------------------------------------------------- corpus


def prose_folder(root: Path, good: int, bad: bool) -> Path:
    """root/prose with `good` texts and, if `bad`, an empty file and binary garbage."""
    import random

    folder = root / "prose"
    folder.mkdir(parents=True)
    for i in range(good):
        (folder / f"work{i}.txt").write_text(synthetic_prose(i, 8), encoding="utf-8")
    if bad:
        (folder / "empty.txt").write_bytes(b"")
        (folder / "garbage.bin").write_bytes(random.Random(0).randbytes(4096))
    return folder


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_corpus_builds_and_lists_what_it_skipped(double: Path, tmp_path: Path) -> None:
    folder = prose_folder(tmp_path, good=3, bad=True)
    assert invoke("add", folder, "--author", "Андреев", "--role", "target").exit_code == 0
    result = invoke("corpus")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    out = flat(result.stdout)
    assert "Андреев" in out and "target" in out
    assert "3 documents (" in out and "skipped 2 item(s)" in out
    assert "warning" not in out
    assert "skipped prose/empty.txt: empty file" in out
    assert "skipped prose/garbage.bin: binary file" in out
    assert f"Wrote {double / 'corpus' / 'documents.jsonl'}" in out
    lines = (double / "corpus" / "documents.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert (double / "corpus" / "report.md").is_file() and (double / "corpus" / "report.json").is_file()


def test_corpus_with_the_workspace_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = prose_folder(tmp_path, good=2, bad=False)
    assert invoke("init", tmp_path / "d").exit_code == 0
    assert invoke("-w", tmp_path / "d", "add", folder, "--author", "Грин").exit_code == 0
    monkeypatch.chdir(tmp_path)  # not inside a workspace
    result = invoke("-w", tmp_path / "d", "corpus")
    assert result.exit_code == 0, result.output
    assert "2 documents (" in flat(result.stdout) and "skipped 0 item(s)" in flat(result.stdout)
    assert (tmp_path / "d" / "corpus" / "documents.jsonl").is_file()


def test_corpus_warns_when_nothing_of_the_target_is_held_out(double: Path, tmp_path: Path) -> None:
    folder = prose_folder(tmp_path, good=1, bad=False)
    assert invoke("add", folder, "--author", "Андреев", "--role", "target").exit_code == 0
    result = invoke("corpus")
    assert result.exit_code == 0, result.output
    assert "warning: Андреев: only one work, so none is held out" in flat(result.stdout)
    assert "only one work" in (double / "corpus" / "report.md").read_text(encoding="utf-8")


def test_corpus_with_only_bad_files(double: Path, tmp_path: Path) -> None:
    folder = prose_folder(tmp_path, good=0, bad=True)
    assert invoke("add", folder, "--author", "Андреев").exit_code == 0
    assert_user_error(invoke("corpus"), "no usable text in 2 file(s)", "prose/empty.txt: empty file", "prose/garbage.bin")
    assert not (double / "corpus").exists()


def test_corpus_without_sources(double: Path) -> None:
    assert_user_error(invoke("corpus"), "no sources yet", "dvoinik add")


def test_corpus_outside_a_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(invoke("corpus"), str(tmp_path.resolve()), "not inside a dvoinik workspace", "dvoinik init")


def test_corpus_that_cannot_be_written(double: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dvoinik.corpus import build

    folder = prose_folder(tmp_path, good=2, bad=False)
    assert invoke("add", folder, "--author", "Андреев", "--role", "target").exit_code == 0

    def fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build.os, "fsync", fsync)
    assert_user_error(invoke("corpus"), f"{double / 'corpus'}: no space left on device", "free some space")
    assert not (double / "corpus").exists()



def test_file_names_that_are_not_utf8_are_added_read_and_shown_escaped(double: Path, tmp_path: Path) -> None:
    """cp1251 names unpacked on Linux: a folder of them, one given by itself, one inside a tar."""
    import io
    import tarfile

    folder = tmp_path / "cp1251"
    folder.mkdir()
    name = "Рассказ".encode("cp1251")  # b"\xd0\xe0\xf1..." : not UTF-8
    (folder / os.fsdecode(name + b"-1.txt")).write_text(synthetic_prose(1, 8), encoding="utf-8")
    single = tmp_path / os.fsdecode(name + b"-2.txt")
    single.write_text(synthetic_prose(2, 8), encoding="utf-8")
    packed = synthetic_prose(3, 8).encode("utf-8")
    with tarfile.open(tmp_path / "packed.tar", "w", format=tarfile.GNU_FORMAT, encoding="cp1251") as tar:
        member = tarfile.TarInfo("Глава.txt")
        member.size = len(packed)
        tar.addfile(member, io.BytesIO(packed))

    for path in (folder, single, tmp_path / "packed.tar"):
        result = invoke("add", path, "--author", "Андреев", "--role", "target")
        assert result.exit_code == 0, (result.output, result.exception)
    assert "\\xd0\\xe0" in flat(result.stdout)  # the table shows the name with its bytes escaped
    text = (double / "dvoinik.toml").read_bytes().decode("utf-8")  # still UTF-8, still TOML
    assert 'path_bytes = "../%D0%E0%F1%F1%EA%E0%E7-2.txt"' in text
    assert single.resolve() in {s.path for s in load_workspace(double).sources}

    result = invoke("corpus")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = [json.loads(line) for line in (double / "corpus" / "documents.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["source"] for r in rows) == ["\\xd0\\xe0\\xf1\\xf1\\xea\\xe0\\xe7-2.txt",
                                                 "cp1251/\\xd0\\xe0\\xf1\\xf1\\xea\\xe0\\xe7-1.txt",
                                                 "packed.tar!\\xc3\\xeb\\xe0\\xe2\\xe0.txt"]
    assert "3 documents (" in flat(result.stdout)


def test_a_missing_path_that_is_not_utf8_is_one_line(double: Path, tmp_path: Path) -> None:
    assert_user_error(invoke("add", tmp_path / os.fsdecode(b"\xcf\xf0.txt"), "--author", "A"),
                      "\\xcf\\xf0.txt: no such file or folder")


# ---------------------------------------------------------------- train and demo


def test_train_from_the_command_line(tmp_path: Path) -> None:
    from training_fixtures import make_workspace

    ws = make_workspace(tmp_path)
    result = invoke("-w", ws.root, "train", "--max-steps", "4", "--save-every", "2", "--run", "cli",
                    "--set", "batch_size=2", "--set", "keep_last=1")
    assert result.exit_code == 0, result.output
    assert "Training" in result.stdout and "micro · full" in result.stdout
    assert "Stopped at step 4 (max steps)" in result.stdout
    assert sorted(p.name for p in (ws.runs_dir / "cli").glob("checkpoint-*")) == ["checkpoint-4"]
    resumed = invoke("-w", ws.root, "train", "--run", "cli", "--resume", "--max-steps", "6")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from checkpoint-4" in resumed.stdout and "steps 4→6" in resumed.stdout
    assert_user_error(invoke("-w", ws.root, "train", "--run", "cli"), "already exists", "--resume")
    assert_user_error(invoke("-w", ws.root, "train", "--method", "lora", "--run", "x"), "adapts a pretrained model")
    assert_user_error(invoke("-w", ws.root, "train", "--set", "batch_size=0"), "batch_size must be 1 or more")
    assert_user_error(invoke("-w", ws.root, "train", "--set", "nonsense"), "expected KEY=VALUE")
    assert_user_error(invoke("-w", ws.root, "train", "--base", str(tmp_path / "books")), "cannot load the model in")


def test_train_before_the_corpus_is_built(double: Path) -> None:
    assert_user_error(invoke("train"), "no corpus built yet", "dvoinik corpus")


def test_demo_refuses_a_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("keep me", encoding="utf-8")
    assert_user_error(invoke("demo", tmp_path / "used"), "already exists and is not empty")
    assert (tmp_path / "used" / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_generate_from_the_command_line(tmp_path: Path) -> None:
    import json

    from training_fixtures import make_workspace

    ws = make_workspace(tmp_path)
    assert invoke("-w", ws.root, "train", "--max-steps", "2", "--run", "g").exit_code == 0
    streamed = invoke("-w", ws.root, "generate", "Бава", "--max-new-tokens", "8", "--seed", "3")
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.startswith("Бава") and "g/checkpoint-2 · preset coherent · seed 3 · guard 10" in streamed.stdout
    as_json = invoke("-w", ws.root, "generate", "Бава", "--n", "2", "--json", "--preset", "nucleus",
                     "--max-new-tokens", "6", "--seed", "4", "--guard", "0", "--stop", "\n")
    assert as_json.exit_code == 0, as_json.output
    result = json.loads(as_json.stdout)
    assert result["checkpoint"] == "g/checkpoint-2" and result["guard"] == 0
    assert result["decoding"]["top_p"] == 0.9 and result["decoding"]["seed"] == 4 and result["decoding"]["stop"] == ["\n"]
    assert [set(v) >= {"text", "new_tokens", "finish_reason", "copy"} for v in result["variants"]] == [True, True]
    assert all(v["copy"]["tokens"] >= 0 and v["new_tokens"] <= 6 for v in result["variants"])
    beams = invoke("-w", ws.root, "generate", "Бава", "--n", "2", "--num-beams", "2", "--max-new-tokens", "4")
    assert beams.exit_code == 0 and "1. Бава" in beams.stdout and "2. Бава" in beams.stdout
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--preset", "hot"), "unknown preset 'hot'")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--n", "0"), "ask for 1 variant or more")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--max-new-tokens", "0"), "max_new_tokens = 0")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--style", "g=1", "--run", "g"), "leave out --run")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--checkpoint", "best"), "no recommendation yet")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--checkpoint", "checkpoint-9"), "no such checkpoint")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--run", "nope"), "no such run")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--top-p", "2"), "top_p = 2.0")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--style", "g"), "expected RUN=WEIGHT")
    assert_user_error(invoke("-w", ws.root, "generate", "Бава", "--style", "g=1"), "mixes LoRA adapters")


def test_generate_before_training(double: Path) -> None:
    assert_user_error(invoke("generate", "Бава"), "no runs yet", "dvoinik train")


def test_serve_refuses_the_network_without_a_key_a_taken_port_and_a_workspace_without_runs(tmp_path: Path,
                                                                                           monkeypatch) -> None:
    import socket

    from serving import free_port

    monkeypatch.delenv("DVOINIK_API_KEY", raising=False)
    ws = tmp_path / "ws"
    invoke("init", ws)
    assert_user_error(invoke("-w", ws, "serve", "--host", "0.0.0.0"), "--host 0.0.0.0", "API key")
    assert_user_error(invoke("-w", ws, "serve", "--port", "70000"), "--port 70000")
    assert_user_error(invoke("-w", ws, "serve", "--port", str(free_port())), "dvoinik train")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert_user_error(invoke("-w", ws, "serve", "--port", str(taken.getsockname()[1])), "cannot listen", "--port")


def test_help_keeps_the_settings_it_names() -> None:
    """Help texts name settings as `[table] key`; rich markup would have deleted the brackets and the table."""
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    assert "[serve] host" in " ".join(result.stdout.split())
