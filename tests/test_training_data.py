from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dvoinik.tokens import AuthorTokens, TokenSet
from dvoinik.training.data import BlockSampler, DataError, author_shares, validation_blocks


def token_set(tmp_path: Path, sizes: dict[str, tuple[int, float]]) -> TokenSet:
    """A token set whose author i holds the ids i*1000 + 0, 1, 2, ... (so a row tells its author and offset)."""
    authors = []
    (tmp_path / "train").mkdir(exist_ok=True)
    for i, (name, (count, weight)) in enumerate(sizes.items()):
        np.arange(i * 1000, i * 1000 + count, dtype=np.uint16).tofile(tmp_path / "train" / f"{i:02d}.bin")
        authors.append(AuthorTokens(name, "target" if i == 0 else "influence", weight, f"{i:02d}.bin", count, 0))
    return TokenSet(tmp_path, "bpe", "uint16", 0, 5000, tuple(authors))


def test_shares_are_weight_times_tokens_over_authors_with_a_block() -> None:
    authors = (AuthorTokens("A", "target", 10.0, "00.bin", 100, 0), AuthorTokens("B", "influence", 1.0, "01.bin", 900, 0),
               AuthorTokens("C", "influence", 1.0, "02.bin", 5, 0))
    shares = author_shares(authors, block_size=8)
    assert shares == pytest.approx({"A": 1000 / 1900, "B": 900 / 1900})  # C has less than one block


def test_batches_are_contiguous_blocks_drawn_by_the_mix(tmp_path: Path) -> None:
    sampler = BlockSampler(token_set(tmp_path, {"A": (500, 10.0), "B": (500, 1.0)}), block_size=16, batch_size=64, seed=1)
    counts = {0: 0, 1: 0}
    for _ in range(20):
        batch = sampler.next_batch()
        assert batch.shape == (64, 17) and batch.dtype == np.int64
        assert (np.diff(batch, axis=1) == 1).all()  # consecutive tokens of one author
        for row in batch:
            counts[int(row[0]) // 1000] += 1
    assert counts[0] / sum(counts.values()) == pytest.approx(10 / 11, abs=0.03)


def test_the_state_is_the_data_position(tmp_path: Path) -> None:
    tokens = token_set(tmp_path, {"A": (500, 1.0)})
    first = BlockSampler(tokens, 16, 4, seed=3)
    first.next_batch()
    saved = first.state()
    expected = [first.next_batch() for _ in range(3)]
    again = BlockSampler(tokens, 16, 4, seed=3)
    again.load_state(saved)
    assert all((a == b).all() for a, b in zip(expected, [again.next_batch() for _ in range(3)]))
    other_rank = BlockSampler(tokens, 16, 4, seed=3, rank=1)  # each process draws its own stream
    assert not (BlockSampler(tokens, 16, 4, seed=3).next_batch() == other_rank.next_batch()).all()


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no author has more than block_size = 64 training tokens"):
        BlockSampler(token_set(tmp_path, {"A": (50, 1.0)}), block_size=64, batch_size=2, seed=0)


def test_validation_blocks_are_fixed_and_spread() -> None:
    tokens = np.arange(1000)
    blocks = validation_blocks(tokens, block_size=9, count=4)
    assert [int(b[0]) for b in blocks] == [0, 330, 660, 990] and all(len(b) == 10 for b in blocks)
    assert [len(b) for b in validation_blocks(np.arange(5), 9, 4)] == [5]
    assert validation_blocks(np.arange(1), 9, 4) == []


def test_with_voices_every_row_starts_with_its_authors_marker_and_draws_as_without(tmp_path: Path) -> None:
    tokens = token_set(tmp_path, {"A": (500, 1.0), "B": (500, 1.0)})
    plain = BlockSampler(tokens, 16, 32, seed=5)
    voiced = BlockSampler(tokens, 16, 32, seed=5, markers={"A": 4998, "B": 4999})
    for _ in range(3):
        without, with_marker = plain.next_batch(), voiced.next_batch()
        assert with_marker.shape == without.shape  # the marker takes the place of the last token
        authors = without[:, 0] // 1000
        assert (with_marker[:, 0] == np.where(authors == 0, 4998, 4999)).all()
        assert (with_marker[:, 1:] == without[:, :-1]).all()  # the same draws: resume stays exact
    assert plain.state() == voiced.state()


def test_validation_blocks_with_a_marker_read_as_training_does() -> None:
    blocks = validation_blocks(np.arange(100), block_size=9, count=2, marker=777)
    assert all(len(b) == 10 and b[0] == 777 for b in blocks)
    assert [int(b[1]) for b in blocks] == [int(b[0]) for b in validation_blocks(np.arange(100), 9, 2)]
    assert validation_blocks(np.arange(5), 9, 1, marker=7)[0].tolist() == [7, 0, 1, 2, 3, 4]
