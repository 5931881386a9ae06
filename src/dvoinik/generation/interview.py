"""Interview: a question put to the double inside a prose frame in the author's own convention.

The double is a prose model: asked a bare question, it continues the question. So the
question is written the way the author's own books write speech — a line led by a dash
(`— …`), a quotation in guillemets, or, for an author who writes no dialogue, a letter or
a diary entry — and the double writes on from the answer's opening until its turn ends
(the end of the line, the closing quote, the end of the paragraph):

    — Что вы помните о деревне?          (the question, in the frame)
    — Туман над рекой, и бабушку…        (the double's answer, cut at the end of its line)

Earlier turns stay in the prompt, oldest dropped first when the model's context is full.
The frame is chosen from the target's texts in `corpus/documents.jsonl` (`detect_frame`)
unless `[interview] frame` names one; every part of it is editable there, and in the
studio per interview.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from dvoinik.corpus.build import DOCUMENTS_FILE, REPORT_JSON
from dvoinik.generation.decoding import Decoding, GenerationError
from dvoinik.generation.double import Double
from dvoinik.generation.variants import Generation, generate
from dvoinik.generation.voices import Voice

PARAGRAPH = "\n\n"  # how documents.jsonl separates paragraphs (corpus/clean.py)
QUESTION = "{question}"
FRAMES = ("dialogue", "quotes", "letter", "diary")
DASHES = "—–-"
QUOTES = "«„“\""
MIN_DIALOGUE_LINES = 5  # fewer dialogue paragraphs than this (or than 2% of all) is no dialogue layout
MIN_DIALOGUE_SHARE = 0.02
SENTENCE_END = re.compile(r"[.!?…»\"”)](?=\s|$)")


@dataclass(frozen=True)
class Frame:
    """How a question is written (`question`, with {question} in it), how the answer opens, and where it ends."""

    name: str  # dialogue, quotes, letter, diary (or "custom" when edited)
    question: str
    answer: str
    end: str
    preamble: str = ""

    def __post_init__(self) -> None:
        if QUESTION not in self.question:
            raise GenerationError(f"the interview's question template {self.question!r} has no {QUESTION}")
        if not self.end:
            raise GenerationError("the interview frame needs an end: where the answer's turn stops")

    def asked(self, question: str) -> str:
        """The question in the frame, followed by the answer's opening: where the double writes on."""
        return self.question.replace(QUESTION, " ".join(question.split())) + self.answer

    def turn(self, question: str, answer: str) -> str:
        """A finished turn as the transcript keeps it: the question, the answer, its close, a paragraph break."""
        closing = self.end if self.end.strip() else ""
        return self.asked(question) + answer.strip() + closing + PARAGRAPH

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(value: dict) -> Frame:
        return Frame(**{key: str(value[key]) for key in ("name", "question", "answer", "end", "preamble")
                        if key in value})


# The built-in frames by language; any other language gets the English ones (every part is editable).
BUILTIN: dict[str, dict[str, Frame]] = {
    "ru": {
        "dialogue": Frame("dialogue", "— {question}\n\n", "— ", "\n"),
        "quotes": Frame("quotes", "«{question}»\n\n", "«", "»"),
        "letter": Frame("letter", "Мне пишут: «{question}»\n\n", "", "\n\n"),
        "diary": Frame("diary", "Сегодня меня спросили: «{question}»\n\n", "", "\n\n"),
    },
    "en": {
        "dialogue": Frame("dialogue", "— {question}\n\n", "— ", "\n"),
        "quotes": Frame("quotes", "“{question}”\n\n", "“", "”"),
        "letter": Frame("letter", "A letter asks me: “{question}”\n\n", "", "\n\n"),
        "diary": Frame("diary", "Today I was asked: “{question}”\n\n", "", "\n\n"),
    },
}


def builtin_frames(language: str) -> dict[str, Frame]:
    return BUILTIN.get(language.split("-")[0].lower(), BUILTIN["en"])


@dataclass(frozen=True)
class Detection:
    """What the target's texts showed: paragraphs led by a dash, by a quote, and in all."""

    frame: str
    dash_paragraphs: int
    quote_paragraphs: int
    paragraphs: int
    author: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def detect_layout(paragraphs: Iterable[str]) -> Detection:
    """dialogue when enough paragraphs open with a dash, quotes when more open with a quote, else letter."""
    dash = quote = total = 0
    for paragraph in paragraphs:
        text = paragraph.lstrip()
        if not text:
            continue
        total += 1
        if text[0] in DASHES and text[1:2].isspace():
            dash += 1
        elif text[0] in QUOTES:
            quote += 1
    enough = max(MIN_DIALOGUE_LINES, MIN_DIALOGUE_SHARE * total)
    if dash >= enough and dash >= quote:
        name = "dialogue"
    elif quote >= enough:
        name = "quotes"
    else:
        name = "letter"  # no dialogue of their own: a reply in the first person fits any prose writer
    return Detection(name, dash, quote, total)


def _paragraphs(corpus_dir: Path, author: str | None) -> Iterator[str]:
    with open(corpus_dir / DOCUMENTS_FILE, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                doc = json.loads(line)
                if author is None or doc["author"] == author:
                    yield from doc["text"].split("\n")


def detect_frame(corpus_dir: Path) -> Detection:
    """The target author's dialogue layout, read from `corpus/documents.jsonl` (all authors when none is the target)."""
    if not (corpus_dir / DOCUMENTS_FILE).is_file():
        return Detection("dialogue", 0, 0, 0)  # no corpus yet: the commonest layout of Russian prose
    try:
        authors = json.loads((corpus_dir / REPORT_JSON).read_text(encoding="utf-8")).get("authors", {})
    except (OSError, ValueError):
        authors = {}
    target = next((name for name, info in authors.items() if info.get("role") == "target"), None)
    return replace(detect_layout(_paragraphs(corpus_dir, target)), author=target)


def frame_from_settings(settings: Any, language: str, corpus_dir: Path | None = None) -> tuple[Frame, Detection | None]:
    """The frame `[interview]` describes: its named (or detected) frame with any part the settings override."""
    detection = None
    name = settings.frame
    if name == "auto":
        detection = detect_frame(corpus_dir) if corpus_dir is not None else Detection("dialogue", 0, 0, 0)
        name = detection.frame
    frame = builtin_frames(language)[name]
    overrides = {key: getattr(settings, key) for key in ("question", "answer", "end", "preamble")
                 if getattr(settings, key)}
    if overrides:
        frame = replace(frame, name="custom" if set(overrides) - {"preamble"} else frame.name, **overrides)
    return frame, detection


# ---------------------------------------------------------------- the conversation


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


@dataclass(frozen=True)
class FramedPrompt:
    text: str
    turns_kept: int  # earlier turns in the prompt (the oldest are dropped first when it is too long)
    turns_dropped: int


def framed_prompt(frame: Frame, turns: list[Turn], question: str, tokenizer: Any, room: int | None,
                  prefill: str = "") -> FramedPrompt:
    """The preamble, the latest turns that fit in `room` tokens, and the question with the answer's opening.

    `prefill` is the start of the answer, when the caller has one (the OpenAI chat API's
    last assistant message); the double writes on from it.
    """
    head = frame.preamble + (PARAGRAPH if frame.preamble and not frame.preamble.endswith("\n") else "")
    # No space at the very end: a BPE puts spaces at the start of words, so the double writes its own.
    tail = frame.asked(question) + prefill if prefill else frame.asked(question).rstrip(" ")
    history = [frame.turn(t.question, t.answer) for t in turns]

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    kept = len(history)
    if room is not None:
        budget = room - length(head + tail)
        while kept and sum(length(h) for h in history[len(history) - kept:]) > budget:
            kept -= 1
    text = head + "".join(history[len(history) - kept:]) + tail
    return FramedPrompt(text, kept, len(history) - kept)


def trimmed_answer(text: str, finish_reason: str) -> str:
    """The answer as kept: stripped, and when it ran out of tokens, cut after its last full sentence (if any)."""
    text = text.strip()
    if finish_reason == "length":
        ends = list(SENTENCE_END.finditer(text))
        if ends and ends[-1].end() > len(text) // 3:
            text = text[: ends[-1].end()]
    return text


@dataclass(frozen=True)
class Answer:
    text: str  # the double's answer, cut at the end of its turn
    prompt: FramedPrompt
    generation: Generation

    @property
    def variant(self) -> Any:
        return self.generation.variants[0]


def answer_decoding(frame: Frame, decoding: Decoding) -> Decoding:
    """`decoding` that also stops where the frame's turn ends."""
    return replace(decoding, stop=tuple(dict.fromkeys((*decoding.stop, frame.end))))


def answer_length(double: Double, wanted: int) -> int:
    """`wanted` answer tokens, but at most half of what the model was trained on (the rest is the conversation)."""
    budget = double.trained_length or double.context_length
    return max(1, min(wanted, budget // 2)) if budget else wanted


def context_room(double: Double, max_new_tokens: int) -> int | None:
    """Tokens a framed prompt may take: the model's trained length less the answer (and a voice's marker)."""
    budget = double.trained_length or double.context_length
    return budget - max_new_tokens - (1 if double.voices else 0) if budget else None


def turn_ending_tokens(tokenizer: Any, frame: Frame) -> list[int]:
    """The tokens an answer must not begin with: those that would end its turn before it has said anything."""
    found = set()
    for text in dict.fromkeys((frame.end, frame.end.strip(), "\n", "\n\n")):
        ids = tokenizer(text, add_special_tokens=False).input_ids if text else []
        if ids:
            found.add(int(ids[0]))
    return sorted(found)


@contextmanager
def answer_opens_with_text(double: Double, frame: Frame) -> Iterator[None]:
    """While inside, generation may not begin with a token that ends the frame's turn (a line break, a closing quote).

    A small model after "»\n\n" often writes one more line break first, which would end
    the answer before a word of it. Done through the model's generation config
    (`begin_suppress_tokens`), which transformers turns into a processor for the first
    step only; generation runs one job at a time, so the change is never seen by another.
    """
    config = double.model.generation_config
    before = config.begin_suppress_tokens
    config.begin_suppress_tokens = turn_ending_tokens(double.tokenizer, frame)
    try:
        yield
    finally:
        config.begin_suppress_tokens = before


def ask(double: Double, frame: Frame, turns: list[Turn], question: str, decoding: Decoding, guard: int = 0,
        voice: Voice | None = None, on_text: Callable[[int, str], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> Answer:
    """The double's answer to `question`, after `turns`, in `frame` (guarded and copy-scored like any generation)."""
    if not question.strip():
        raise GenerationError("ask a question: it is empty")
    prompt = framed_prompt(frame, turns, question, double.tokenizer, context_room(double, decoding.max_new_tokens))
    with answer_opens_with_text(double, frame):
        result = generate(double, prompt.text, answer_decoding(frame, decoding), 1, guard, on_text=on_text,
                          should_stop=should_stop, voice=voice)
    variant = result.variants[0]
    return Answer(trimmed_answer(variant.text, variant.finish_reason), prompt, result)


def transcript(frame: Frame, turns: list[Turn]) -> str:
    """The conversation as prose in its frame (what `dvoinik interview --save` writes)."""
    head = frame.preamble.strip()
    return (head + PARAGRAPH if head else "") + "".join(frame.turn(t.question, t.answer) for t in turns)
