"""Made-up Russian-looking prose for tests: different seeds never share a work by chance."""

from __future__ import annotations

import random

SYLLABLES = "ба ве го да ле ми но пу ра со ти ку ше ча ёж зы ль вь ст кр пр тр ой ей ар ор".split()


def synthetic_prose(seed: int, paragraphs: int, *, dialogue: bool = False) -> str:
    """`paragraphs` paragraphs of 15-60 random words from a 3,000-word vocabulary.

    `dialogue` adds what the cleaner and dedup normalise: dialogue dashes in every third
    paragraph, «quotes» in every fourth.
    """
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    out = []
    for p in range(paragraphs):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(15, 60))]
        sentence = " ".join(words).capitalize()
        if dialogue and p % 3 == 0:
            sentence = "— " + sentence.replace(" ", " — ", 1)
        if dialogue and p % 4 == 0:
            half = len(words) // 2
            sentence = " ".join(words[:half]) + " «" + " ".join(words[half:]) + "»"
        out.append(sentence + ".")
    return "\n\n".join(out)


def synthetic_words(n: int, seed: int = 0) -> str:
    """One paragraph of exactly `n` three-syllable words."""
    rng = random.Random(seed)
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(3)) for _ in range(n)).capitalize() + "."
