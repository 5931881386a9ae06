"""Interview frames: chosen from the corpus's dialogue layout, editable; the framed prompt; answers cut at their turn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvoinik.cli import app
from dvoinik.generation.decoding import GenerationError, decoding_for
from dvoinik.generation.interview import (
    Frame,
    Turn,
    answer_decoding,
    ask,
    builtin_frames,
    detect_frame,
    detect_layout,
    frame_from_settings,
    framed_prompt,
    transcript,
    trimmed_answer,
    turn_ending_tokens,
)
from dvoinik.workspace import InterviewSettings

DIALOGUE = builtin_frames("ru")["dialogue"]


class Words:
    """A tokenizer that counts words: enough to see which turns fit."""

    def __call__(self, text: str, add_special_tokens: bool = False):
        class Encoded:
            input_ids = list(range(len(text.split())))

        return Encoded()


def test_the_layout_is_read_from_how_paragraphs_open() -> None:
    dashes = ["— Где справка?", "— В 315.", "Мухин выходит."] * 5
    assert detect_layout(dashes).frame == "dialogue"
    quotes = ["«Где справка?» — спросил он.", "Он вышел."] * 5
    assert detect_layout(quotes).frame == "quotes"
    lyrical = ["Я помню, как по утрам над рекой поднимался туман; и всё вокруг становилось тихим."] * 40
    assert detect_layout(lyrical + ["— Одна реплика."]).frame == "letter"  # too few to be a layout
    detection = detect_layout(dashes)
    assert (detection.dash_paragraphs, detection.paragraphs) == (10, 15)


def test_the_targets_texts_decide_and_settings_override(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    docs = [{"author": "Цель", "text": "\n\n".join(["— Да?", "— Нет."] * 5)},
            {"author": "Влияние", "text": "\n\n".join(["«Да?» — сказал он."] * 20)}]
    (corpus / "documents.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs),
                                            encoding="utf-8")
    (corpus / "report.json").write_text(json.dumps({"authors": {"Цель": {"role": "target"},
                                                                "Влияние": {"role": "influence"}}}), encoding="utf-8")
    assert detect_frame(corpus).frame == "dialogue" and detect_frame(corpus).author == "Цель"
    frame, detection = frame_from_settings(InterviewSettings(), "ru", corpus)
    assert frame == DIALOGUE and detection.frame == "dialogue"
    frame, detection = frame_from_settings(InterviewSettings(frame="quotes", preamble="В студии."), "ru", corpus)
    assert (frame.name, frame.question, frame.preamble, detection) == ("quotes", "«{question}»\n\n", "В студии.", None)
    custom, _ = frame_from_settings(InterviewSettings(frame="dialogue", end="»"), "en", corpus)
    assert custom.name == "custom" and custom.end == "»" and custom.answer == "— "
    assert detect_frame(tmp_path / "nowhere").frame == "dialogue"  # no corpus yet


def test_a_frame_needs_a_place_for_the_question_and_an_end() -> None:
    with pytest.raises(GenerationError, match="no \\{question\\}"):
        Frame("custom", "— вопрос", "— ", "\n")
    with pytest.raises(GenerationError, match="needs an end"):
        Frame("custom", "{question}", "", "")
    assert Frame.from_json(DIALOGUE.to_json()) == DIALOGUE


def test_the_prompt_keeps_the_latest_turns_that_fit() -> None:
    turns = [Turn(f"вопрос {i}", f"ответ номер {i} длинный") for i in range(5)]
    whole = framed_prompt(DIALOGUE, turns, "Что дальше?", Words(), room=None)
    assert whole.turns_kept == 5 and whole.text.startswith("— вопрос 0\n\n— ответ номер 0 длинный\n\n")
    assert whole.text.endswith("— Что дальше?\n\n—")  # no space at the very end: the model writes its own
    cut = framed_prompt(DIALOGUE, turns, "Что дальше?", Words(), room=20)
    assert (cut.turns_kept, cut.turns_dropped) == (2, 3) and "вопрос 2" not in cut.text and "вопрос 4" in cut.text
    framed = framed_prompt(Frame("dialogue", "— {question}\n\n", "— ", "\n", "Студия."), [], "Да?", Words(), None,
                           prefill="Нет,")
    assert framed.text == "Студия.\n\n— Да?\n\n— Нет,"
    assert transcript(DIALOGUE, turns[:1]) == "— вопрос 0\n\n— ответ номер 0 длинный\n\n"


def test_an_answer_is_cut_at_its_turn_and_after_its_last_sentence() -> None:
    assert answer_decoding(DIALOGUE, decoding_for("coherent", stop=("END",))).stop == ("END", "\n")
    assert trimmed_answer("  Туман. Река шла ", "stop") == "Туман. Река шла"
    assert trimmed_answer("Туман над рекой. Река шла и шла, а потом", "length") == "Туман над рекой."
    assert trimmed_answer("Туман. Река шла и шла, а потом всё длиннее и длиннее", "length") \
        == "Туман. Река шла и шла, а потом всё длиннее и длиннее"  # the only sentence end is too early


def test_a_served_double_answers_in_the_frame_and_the_cli_keeps_the_transcript(served_ws, tmp_path: Path) -> None:
    from dvoinik.generation.double import load_double

    double = load_double(served_ws)
    assert turn_ending_tokens(double.tokenizer, DIALOGUE)  # at least the line break
    answer = ask(double, DIALOGUE, [Turn("Ба?", "Ве.")], "Го да?", decoding_for("coherent", max_new_tokens=16, seed=1),
                 guard=10)
    assert answer.prompt.text.endswith("— Ба?\n\n— Ве.\n\n— Го да?\n\n—")
    assert answer.text.strip() and "\n" not in answer.text  # a dialogue line ends at the line's end
    assert answer.variant.copy is not None and answer.variant.copy.tokens < 10  # the guard held
    with pytest.raises(GenerationError, match="empty"):
        ask(double, DIALOGUE, [], "  ", decoding_for("coherent"))

    saved = tmp_path / "interview.txt"
    result = CliRunner().invoke(app, ["-w", str(served_ws.root), "interview", "-q", "Ба ве?", "-q", "Го да?",
                                      "--frame", "dialogue", "--seed", "3", "--max-new-tokens", "12",
                                      "--save", str(saved)])
    assert result.exit_code == 0, result.output
    assert "— Ба ве?" in result.output
    assert "longest span found" in result.output or "nothing found" in result.output  # each answer's copy score
    kept = saved.read_text(encoding="utf-8")
    assert kept.startswith("— Ба ве?\n\n— ") and "\n\n— Го да?\n\n— " in kept
    result = CliRunner().invoke(app, ["-w", str(served_ws.root), "interview", "--frame", "poem", "-q", "?"])
    assert result.exit_code == 2 and "frame must be one of" in result.output
