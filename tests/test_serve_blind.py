"""Blind tests: items without leaks, equal lengths, scores with their interval and p-value."""

from __future__ import annotations

from collections import Counter

import pytest

from dvoinik.serve.blind import (
    binomial_tail,
    equal_length,
    make_items,
    public_item,
    results,
    score,
    trim_words,
)
from dvoinik.serve.store import BlindAnswer


def test_binomial_tail() -> None:
    assert binomial_tail(0, 10) == pytest.approx(1.0)
    assert binomial_tail(10, 10) == pytest.approx(1 / 1024)
    assert binomial_tail(8, 10) == pytest.approx(56 / 1024)


def test_score() -> None:
    s = score([True] * 7 + [False] * 3)
    assert (s.answers, s.correct, s.accuracy, s.chance) == (10, 7, 0.7, 0.5)
    assert s.ci_low < 0.5 < s.ci_high  # 7 of 10 is not evidence against guessing
    assert s.p_value == pytest.approx(176 / 1024)
    assert score([]).accuracy is None


def test_trim_and_equal_length() -> None:
    assert trim_words(" один два\nтри четыре", 3) == " один два\nтри"
    assert trim_words("один", 5) == "один"
    writer, double = equal_length(" раз два три четыре пять", "ный шесть семь.")
    # Leading text kept (it may end the opening's word); both cut alike, before either text's own end.
    assert writer == " раз два…" and double == "ный шесть…"


@pytest.mark.parametrize("kind", ["single", "pairs", "both"])
def test_items_use_each_passage_once_and_hide_their_truth(kind: str) -> None:
    openings = [f"Начало {i}." for i in range(10)]
    filler = " слово" * 25
    writer = [f" настоящее {i}{filler}" for i in range(10)]
    double = [f" двойник {i}{filler}" for i in range(10)]
    items = make_items(openings, writer, double, kind, seed=3)
    assert sorted(i["index"] for i in items) == list(range(10))
    assert sorted(i["opening"] for i in items) == sorted(openings)  # every passage once
    kinds = Counter(i["kind"] for i in items)
    assert kinds == {"single": 10} if kind == "single" else kinds == {"pair": 10} if kind == "pairs" else \
        kinds == {"single": 5, "pair": 5}
    for item in items:
        if item["kind"] == "single":
            assert ("настоящее" in item["text"]) == (item["truth"] == "writer")
        else:
            assert "настоящее" in item[item["truth"]]
        assert "truth" not in public_item(item)
    singles = [i for i in items if i["kind"] == "single"]
    if singles:  # half the singles show the writer
        assert abs(sum(i["truth"] == "writer" for i in singles) - len(singles) / 2) <= 0.5
    assert make_items(openings, writer, double, kind, seed=3) == items  # a seed repeats a test


def test_passages_too_short_to_judge_are_dropped() -> None:
    long, short = " слово" * 30, " коротко"
    items = make_items(["a", "b", "c"], [long, short, long], [long, long, long], "pairs", seed=1)
    assert sorted(i["opening"] for i in items) == ["a", "c"] and sorted(i["index"] for i in items) == [0, 1]


def test_results_per_kind_and_reader() -> None:
    items = [{"index": 0, "kind": "single"}, {"index": 1, "kind": "pair"}]
    answers = [BlindAnswer("Ира", 0, "writer", True), BlindAnswer("Ира", 1, "a", True),
               BlindAnswer("Олег", 0, "double", False), BlindAnswer("Олег", 1, "b", True)]
    out = results(items, answers)
    assert out["overall"]["accuracy"] == 0.75 and out["single"]["accuracy"] == 0.5 and out["pairs"]["accuracy"] == 1.0
    assert [(r["reader"], r["correct"]) for r in out["readers"]] == [("Ира", 2), ("Олег", 1)]
