"""Training batches from the token files: packed blocks, authors drawn by the corpus mix.

Each row of a batch is `block_size + 1` consecutive token ids starting at a random
offset in one author's training tokens (documents are packed, EOS between them), the
author drawn with probability weight × tokens, normalised: the target author's
upsampling. The generator's state is the whole data position, so a resumed run
draws exactly the batches the killed one would have drawn. In a run with voices
(`markers`), a row is the author's marker followed by `block_size` tokens of their text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dvoinik.tokens import AuthorTokens, TokenSet


class DataError(Exception):
    """Too little data for the requested blocks (one line)."""


def author_shares(authors: tuple[AuthorTokens, ...], block_size: int) -> dict[str, float]:
    """Sampling probability per author: weight × training tokens, over authors with at least one block."""
    usable = {a.name: a.weight * a.train_tokens for a in authors if a.train_tokens > block_size}
    total = sum(usable.values())
    return {name: value / total for name, value in usable.items()} if total else {}


@dataclass
class BlockSampler:
    token_set: TokenSet
    block_size: int
    batch_size: int
    seed: int
    rank: int = 0
    markers: dict[str, int] | None = None  # author -> marker id: every row starts with its author's marker
    shares: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.shares = author_shares(self.token_set.authors, self.block_size)
        if not self.shares:
            raise DataError(
                f"{self.token_set.folder}: no author has more than block_size = {self.block_size} training tokens "
                f"({self.token_set.train_tokens} in all); lower train.block_size or add texts"
            )
        by_name = {a.name: a for a in self.token_set.authors}
        self._names = list(self.shares)
        self._probabilities = np.array([self.shares[n] for n in self._names])
        self._arrays = [self.token_set.open("train", by_name[n]) for n in self._names]
        # Each process draws its own stream; the seed and rank fix it.
        self._rng = np.random.Generator(np.random.PCG64([self.seed, self.rank]))

    def next_batch(self) -> np.ndarray:
        """(batch_size, block_size + 1) int64 token ids."""
        authors = self._rng.choice(len(self._names), size=self.batch_size, p=self._probabilities)
        rows = np.empty((self.batch_size, self.block_size + 1), dtype=np.int64)
        for row, author in enumerate(authors):
            tokens = self._arrays[author]
            start = int(self._rng.integers(0, len(tokens) - self.block_size))
            if self.markers is None:
                rows[row] = tokens[start : start + self.block_size + 1]
            else:  # the same draws as without markers: the marker takes the place of the last token
                rows[row, 0] = self.markers[self._names[author]]
                rows[row, 1:] = tokens[start : start + self.block_size]
        return rows

    def state(self) -> dict:
        return self._rng.bit_generator.state

    def load_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state


def validation_blocks(tokens: np.ndarray, block_size: int, count: int, marker: int | None = None) -> list[np.ndarray]:
    """Up to `count` non-overlapping blocks of `block_size + 1` tokens spread evenly over `tokens`.

    Deterministic, so every measurement of a run (and of every run) reads the same text.
    Held-out text shorter than one block gives one shorter block. With a voice `marker`,
    each block is the marker and `block_size` tokens, as training saw them.
    """
    if marker is not None:
        return [np.concatenate(([marker], block[:-1] if len(block) > block_size else block))
                for block in validation_blocks(tokens, block_size, count)]
    if len(tokens) < 2:
        return []
    if len(tokens) <= block_size + 1:
        return [np.asarray(tokens, dtype=np.int64)]
    available = len(tokens) // (block_size + 1)
    chosen = np.linspace(0, available - 1, num=min(count, available)).round().astype(int)
    return [np.asarray(tokens[i * (block_size + 1) : (i + 1) * (block_size + 1)], dtype=np.int64) for i in chosen]
