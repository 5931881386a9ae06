"""Synthetic authors for the stylometry tests: shared function words used at each author's own rates."""

from __future__ import annotations

import random

import numpy as np
from synthetic import SYLLABLES


def _vocabulary(seed: int, size: int) -> list[str]:
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < size:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
        if word not in words:
            words.append(word)
    return words


FUNCTION_WORDS = _vocabulary(0, 200)


def author_prose(author: int, work: int, words: int) -> str:
    """Prose whose author shows in how often each shared function word is used (a Zipf law, bent per author).

    Each work also has its own content words, as real works have their own topics and names.
    """
    style = np.random.default_rng([1, author])
    weights = 1 / np.arange(1, len(FUNCTION_WORDS) + 1) * np.exp(style.normal(0, 0.7, len(FUNCTION_WORDS)))
    weights /= weights.sum()
    content = _vocabulary(1000 * author + work + 1, 150)
    rng = np.random.default_rng([2, author, work])
    picks = [FUNCTION_WORDS[i] for i in rng.choice(len(FUNCTION_WORDS), size=words, p=weights)]
    picks = [w if rng.random() < 0.7 else content[rng.integers(len(content))] for w in picks]
    out, sentence = [], []
    for w in picks:
        sentence.append(w)
        if len(sentence) >= rng.integers(6, 18):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    out.append(" ".join(sentence).capitalize() + ".")
    return "\n\n".join(" ".join(out[i : i + 5]) for i in range(0, len(out), 5))


def corpus(works: dict[str, int], words: int = 1500) -> dict[str, list[tuple[str, str]]]:
    """author -> [(work id, text)] with the given number of works each."""
    return {name: [(f"w{w}", author_prose(a, w, words)) for w in range(n)] for a, (name, n) in enumerate(works.items())}
