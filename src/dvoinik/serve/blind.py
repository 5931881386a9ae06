"""Blind tests: can a reader tell the writer from the double?

Material: openings cut from the target author's *held-out* works (the double never saw
them), the author's real continuation and the double's continuation of the same opening
(as many tokens, never ending early), trimmed to the same number of words and both ending
in "…"; passages under `MIN_WORDS` words are dropped. Two kinds of item:

- single: an opening and one continuation; the reader answers "writer" or "double"
  (half the items show the writer, in random order);
- pair: an opening and both continuations, in random order; the reader picks the writer.

A passage serves one item only, so a reader never sees the same real text twice. Both
kinds have chance level 1/2. Scores carry a Wilson 95% interval and a one-sided exact
binomial p-value against chance: a reader who cannot tell the two apart scores near 50%.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dvoinik.evaluation.evaluate import target_passages, word_starts
from dvoinik.evaluation.voices import voiced_prompt_rows
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double
from dvoinik.generation.variants import sample_ids
from dvoinik.intervals import wilson_interval
from dvoinik.tokens import TokenSet

KINDS = ("single", "pairs", "both")
MIN_WORDS = 20  # shorter continuations say too little to judge, and are dropped
CHANCE = 0.5


@dataclass(frozen=True)
class Score:
    answers: int
    correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    chance: float
    p_value: float | None  # one-sided: P(at least this many right by guessing)

    def to_json(self) -> dict:
        return asdict(self)


def binomial_tail(correct: int, total: int, p: float = CHANCE) -> float:
    """P(X >= correct) for X ~ Binomial(total, p)."""
    return float(sum(math.comb(total, k) * p**k * (1 - p) ** (total - k) for k in range(correct, total + 1)))


def score(outcomes: list[bool], chance: float = CHANCE) -> Score:
    total, correct = len(outcomes), sum(outcomes)
    if total == 0:
        return Score(0, 0, None, None, None, chance, None)
    low, high = wilson_interval(correct, total)
    return Score(total, correct, correct / total, low, high, chance, binomial_tail(correct, total, chance))


def results(items: list[dict], answers: list[Any]) -> dict:
    """Overall, per kind and per reader scores from stored answers (each with .reader, .item, .correct)."""
    kinds = {item["index"]: item["kind"] for item in items}
    readers: dict[str, list[bool]] = {}
    for a in answers:
        readers.setdefault(a.reader, []).append(a.correct)
    return {
        "overall": score([a.correct for a in answers]).to_json(),
        "single": score([a.correct for a in answers if kinds.get(a.item) == "single"]).to_json(),
        "pairs": score([a.correct for a in answers if kinds.get(a.item) == "pair"]).to_json(),
        "readers": [{"reader": name, **score(marks).to_json()} for name, marks in sorted(readers.items())],
    }


# ---------------------------------------------------------------- material


def trim_words(text: str, words: int) -> str:
    """The first `words` words of `text`, with its spacing and line breaks kept."""
    count, inside = 0, False
    for i, ch in enumerate(text):
        if ch.isspace():
            if inside:
                count += 1
                if count == words:
                    return text[:i]
            inside = False
        else:
            inside = True
    return text


def equal_length(writer: str, double: str) -> tuple[str, str]:
    """Both continuations cut to the same number of words (one fewer than the shorter has), both ending in "…".

    Neither keeps its own last word, so both stop alike, mid-stream, and where a text stops
    says nothing about who wrote it (nor does a last token cut in half).
    Leading space is kept: a continuation may begin inside the opening's last word, and the
    page shows opening + continuation as one text.
    """
    words = max(0, min(len(writer.split()), len(double.split())) - 1)
    return trim_words(writer, words).rstrip() + "…", trim_words(double, words).rstrip() + "…"


def make_items(openings: list[str], writer: list[str], double: list[str], kind: str, seed: int) -> list[dict]:
    """Items with their truth, shuffled. "both" gives the first half of the passages as singles, the rest as pairs."""
    rng = random.Random(seed)
    order = [i for i in range(len(openings)) if min(len(writer[i].split()), len(double[i].split())) > MIN_WORDS]
    rng.shuffle(order)
    singles = order if kind == "single" else [] if kind == "pairs" else order[: len(order) // 2]
    single_set = set(singles)
    shows_writer = [True, False] * (len(singles) // 2 + 1)
    rng.shuffle(shows_writer)
    items: list[dict] = []
    for number, i in enumerate(order):
        real, made = equal_length(writer[i], double[i])
        if i in single_set:
            truth = "writer" if shows_writer[singles.index(i)] else "double"
            items.append({"kind": "single", "opening": openings[i], "text": real if truth == "writer" else made,
                          "truth": truth})
        else:
            writer_first = rng.random() < 0.5
            items.append({"kind": "pair", "opening": openings[i], "a": real if writer_first else made,
                          "b": made if writer_first else real, "truth": "a" if writer_first else "b"})
        items[-1]["index"] = number
    return items


def public_item(item: dict) -> dict:
    """An item as the reader sees it: without its truth."""
    return {k: v for k, v in item.items() if k != "truth"}


def is_correct(item: dict, answer: str) -> bool:
    return answer == item["truth"]


def valid_answers(item: dict) -> tuple[str, ...]:
    return ("writer", "double") if item["kind"] == "single" else ("a", "b")


@dataclass(frozen=True)
class Material:
    openings: list[str]
    writer: list[str]
    double: list[str]


def blind_material(double: Double, token_set: TokenSet, passages: int, preset: str, guard: int, seed: int,
                   stop: Any = None) -> Material:
    """Openings from the target's held-out works, the real continuations, and the double's of equal token length."""
    import torch

    trained = (double.trained_length or double.context_length or 512) - (1 if double.voices else 0)  # a marker
    prompt_tokens = max(8, min(48, trained // 4))
    continuation = max(16, min(160, trained - prompt_tokens))
    found = target_passages(token_set, "val", passages, prompt_tokens, continuation, word_starts(double.tokenizer))
    if not found:
        return Material([], [], [])
    made: list[list[int]] = []
    for first in range(0, len(found), 16):
        if stop is not None and stop():
            break
        # A double with voices writes in its target's: the marker first, as in training.
        batch = voiced_prompt_rows(double, torch.tensor(np.array([p.prompt for p in found[first : first + 16]])))
        decoding = decoding_for(preset, max_new_tokens=continuation, seed=seed + first)
        # The double writes as long as the writer did: a text ending early would give itself away.
        made += sample_ids(double, batch, decoding, guard if double.index is not None else 0,
                           min_new_tokens=continuation)
    decode = double.tokenizer.decode
    return Material([decode(p.prompt).lstrip() for p in found[: len(made)]],
                    [decode(p.continuation) for p in found[: len(made)]],
                    [decode(ids, skip_special_tokens=True) for ids in made])
