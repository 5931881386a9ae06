"""A run with voices on the demo's two far-apart authors: each voice reads as its own author, a mix lands between,
and `dvoinik evaluate` prints the attribution matrix beside real held-out text's."""

from __future__ import annotations

import json

import pytest
from demo_fixtures import INFLUENCE, TARGET, VOICES_RUN, demo_workspace, short_style_model
from typer.testing import CliRunner

from dvoinik.cli import app
from dvoinik.evaluation.evaluate import word_starts
from dvoinik.evaluation.voices import voice_matrices, voice_passages
from dvoinik.generation.double import load_double
from dvoinik.runs import find_run, run_token_set
from dvoinik.voices import marker, markers_of
from dvoinik.workspace import write_settings

MIX = {TARGET: 0.5, INFLUENCE: 0.5}


@pytest.fixture(scope="module")
def voiced(tmp_path_factory):
    """`tiny`, 40 steps of 8 × 64 tokens with voices: about 13 s of one CPU core."""
    from dvoinik.training.loop import train

    ws = demo_workspace(tmp_path_factory.mktemp("voices"), VOICES_RUN)
    train(ws, run="voices")
    return ws


@pytest.fixture(scope="module")
def matrices(voiced):
    double = load_double(voiced, "voices")
    run = find_run(voiced, "voices")
    found = voice_passages(run_token_set(voiced, run), 12, 8, 48, word_starts(double.tokenizer))
    return voice_matrices(double, short_style_model(voiced), found, "nucleus", 48, seed=0,
                          voices=[{TARGET: 1.0}, {INFLUENCE: 1.0}, MIX])


def test_the_run_records_its_voices_and_its_checkpoints_carry_them(voiced) -> None:
    run = find_run(voiced, "voices")
    recorded = {v["author"]: v for v in run.record["voices"]}
    assert list(recorded) == [TARGET, INFLUENCE]  # the target first: the default voice
    assert recorded[INFLUENCE]["marker"] == marker(INFLUENCE)
    assert run.record["settings"]["voices"] is True
    double = load_double(voiced, "voices")
    assert double.voices == markers_of(double.tokenizer) == {a: v["id"] for a, v in recorded.items()}
    assert min(double.voices.values()) >= run_token_set(voiced, run).vocab_size  # the token files keep their ids
    assert double.model.generation_config.suppress_tokens == list(double.voices.values())  # never written


def test_each_voice_reads_as_its_own_author(matrices) -> None:
    voices, real = matrices
    for author, other in ((TARGET, INFLUENCE), (INFLUENCE, TARGET)):
        assert voices.share(author, author) >= 0.7, voices.rows
        assert voices.share(author, author) > voices.share(author, other) + 0.4, voices.rows
        assert real.share(author, author) >= 0.7, real.rows  # short real passages can be attributed at all
    assert voices.samples[TARGET] == voices.samples[INFLUENCE] == 24  # the same prompts, from both authors


def test_a_mixed_voice_lands_between_the_two(matrices) -> None:
    voices, _ = matrices
    mixed = voices.share(f"{TARGET}=0.5+{INFLUENCE}=0.5", TARGET)
    assert voices.share(INFLUENCE, TARGET) < mixed < voices.share(TARGET, TARGET), voices.rows


def test_evaluate_prints_the_matrix_beside_real_text(voiced) -> None:
    ws = write_settings(voiced, "evaluate", {"prompts": 8, "prompt_tokens": 8, "sample_tokens": 24,
                                             "extraction_prompts": 2})
    result = CliRunner().invoke(app, ["-w", str(ws.root), "evaluate", "--run", "voices"])
    assert result.exit_code == 0, result.output
    assert "whose text each voice reads like" in result.output and "Real held-out text" in result.output
    report = json.loads((ws.runs_dir / "voices" / "evaluation" / "report.json").read_text(encoding="utf-8"))
    matrix = report["voices"]["samples"]
    assert set(matrix["rows"]) == {TARGET, INFLUENCE} and matrix["samples"][TARGET] == 8
    assert set(report["voices"]["real"]["rows"]) == {TARGET, INFLUENCE}
    assert report["sample_tokens"] == 24  # 8 + 24 + the marker stay within the 64 trained positions
    page = (ws.runs_dir / "voices" / "evaluation" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Voices of checkpoint-40</h2>" in page and f"voice {INFLUENCE}" in page


def test_generate_writes_in_the_voice_asked_for(voiced) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(voiced.root), "generate", "Утром", "--voice", "Рубцов", "--json",
                                 "--max-new-tokens", "8", "--seed", "1", "--run", "voices"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["voice"] == {INFLUENCE: 1.0}
    result = runner.invoke(app, ["-w", str(voiced.root), "generate", "Утром", "--voice", "Ключарёва=3,Рубцов=1",
                                 "--max-new-tokens", "8", "--seed", "1", "--run", "voices"])
    assert result.exit_code == 0 and f"voice {TARGET}=0.75+{INFLUENCE}=0.25" in result.output
    result = runner.invoke(app, ["-w", str(voiced.root), "generate", "Утром", "--voice", "Толстой", "--run", "voices"])
    assert result.exit_code == 2 and "no voice 'Толстой'" in result.output
