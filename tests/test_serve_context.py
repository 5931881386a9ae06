"""The studio's prompt: memory on top, world info by key, the author's note at its depth, the story cut to fit."""

from __future__ import annotations

import pytest
from synthetic import synthetic_prose

from dvoinik.generation.decoding import GenerationError
from dvoinik.serve.context import build_context, triggered, with_note
from dvoinik.serve.store import DocumentState, WorldInfo
from dvoinik.tokens import train_bpe_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(lambda: iter([synthetic_prose(3, 40)]), 400)


def count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def test_world_info_is_triggered_by_keys_in_recent_text() -> None:
    entries = (
        WorldInfo(("Анна",), "Анна — сестра."),
        WorldInfo(("море",), "Дом стоит у моря.", secondary_keys=("ночь", "ночью")),
        WorldInfo((), "Время: 1890-е.", always=True),
        WorldInfo(("Пётр",), "   "),  # nothing to insert
    )
    assert triggered(entries, "У АННЫ не было... анна молчала. Пётр ушёл.") == [0, 2]
    assert triggered(entries, "Море шумело.") == [2]  # a secondary key is needed too
    assert triggered(entries, "Ночью море шумело.") == [1, 2]


def test_the_note_goes_before_the_last_paragraphs() -> None:
    story = "один\nдва\nтри"
    assert with_note(story, "тише", 1) == "один\nдва\n[тише]\nтри"
    assert with_note(story, "тише", 0) == "один\nдва\nтри\n[тише]"
    assert with_note(story, "тише", 10) == "[тише]\nодин\nдва\nтри"
    assert with_note(story, "  ", 1) == story


def test_everything_fits_in_order(tokenizer) -> None:
    state = DocumentState(text="Бава шла к морю.\nБыло тихо.", memory="Рассказ о Баве.", authors_note="Печально.",
                          note_depth=1, world_info=(WorldInfo(("бава",), "Бава — рыбачка."),))
    context = build_context(state, tokenizer, budget=512, max_new_tokens=100)
    assert context.prompt == "Рассказ о Баве.\nБава — рыбачка.\nБава шла к морю.\n[Печально.]\nБыло тихо."
    parts = {p.part: p for p in context.parts}
    assert parts["memory"].tokens == count(tokenizer, "Рассказ о Баве.")
    assert parts["world_info"].entries == (0,) and parts["world_info"].tokens > 0
    assert parts["story"].cut_tokens == 0 and parts["authors_note"].tokens > 0


def test_a_long_story_is_cut_from_its_start_and_the_rest_stays(tokenizer) -> None:
    story = synthetic_prose(5, 30)
    state = DocumentState(text=story, memory="Память всегда наверху.", authors_note="Заметка.",
                          world_info=(WorldInfo((), "Мир всегда.", always=True),))
    context = build_context(state, tokenizer, budget=200, max_new_tokens=50)
    assert context.prompt.startswith("Память всегда наверху.\nМир всегда.\n")
    assert "[Заметка.]" in context.prompt
    assert count(tokenizer, context.prompt) <= 150  # the continuation keeps its room
    story_part = next(p for p in context.parts if p.part == "story")
    assert story_part.cut_tokens > 0
    total = count(tokenizer, story)
    if story_part.estimated:  # the start of a long story is never tokenized: its share of the cut is estimated
        assert abs(story_part.tokens + story_part.cut_tokens - total) / total < 0.05
    else:
        assert story_part.tokens + story_part.cut_tokens == total
    assert context.prompt.rstrip().endswith(story.rstrip()[-40:])  # the end of the story is what is kept


def test_standing_parts_that_overflow_drop_world_info_then_the_note_then_the_start_of_memory(tokenizer) -> None:
    long = synthetic_prose(8, 6)
    state = DocumentState(text="Конец.", memory=long, authors_note=long,
                          world_info=(WorldInfo((), long, always=True),))
    context = build_context(state, tokenizer, budget=120, max_new_tokens=20)
    parts = {p.part: p for p in context.parts}
    assert parts["world_info"].tokens == 0 and parts["authors_note"].tokens == 0
    assert parts["memory"].cut_tokens > 0
    assert count(tokenizer, context.prompt) <= 100


def test_no_room_for_a_prompt_is_refused(tokenizer) -> None:
    with pytest.raises(GenerationError, match="no room"):
        build_context(DocumentState(text="x"), tokenizer, budget=100, max_new_tokens=100)


def test_an_empty_document_gives_an_empty_prompt(tokenizer) -> None:
    context = build_context(DocumentState(), tokenizer, budget=100, max_new_tokens=10)
    assert context.prompt == "" and context.used == 0


def test_a_novel_is_not_tokenized_whole_and_the_cut_is_estimated(tokenizer) -> None:
    chapter = synthetic_prose(11, 20)
    novel = "\n".join([chapter] * 40)  # ~40 times more than the context holds
    exact = build_context(DocumentState(text=chapter), tokenizer, budget=200, max_new_tokens=50)
    long = build_context(DocumentState(text=novel), tokenizer, budget=200, max_new_tokens=50)
    story = next(p for p in long.parts if p.part == "story")
    assert story.estimated and story.to_json()["cut_estimated"] is True
    real_cut = count(tokenizer, novel) - story.tokens
    assert abs(story.cut_tokens - real_cut) / real_cut < 0.05
    assert long.prompt.endswith(novel[-200:]) and count(tokenizer, long.prompt) <= 150
    assert not next(p for p in exact.parts if p.part == "story").estimated
