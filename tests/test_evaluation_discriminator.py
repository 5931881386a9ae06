from __future__ import annotations

import numpy as np
import pytest
from style_texts import author_prose

from dvoinik.evaluation.discriminator import (
    SURPRISAL_FEATURES,
    blind_tests,
    equal_pairs,
    ngram_blind_test,
    surprisal_blind_test,
    token_statistics,
)


def test_pairs_are_cut_to_the_shorter_side() -> None:
    pairs = equal_pairs([[1, 2, 3, 4], [5, 6], [7]], [[9, 9], [8, 8, 8], []])
    assert pairs == [([1, 2], [9, 9]), ([5, 6], [8, 8])]  # the empty sample's pair is dropped


def _pieces(author: int, work: int, count: int, words: int = 60) -> list[str]:
    text = author_prose(author, work, count * words).split()
    return [" ".join(text[i * words : (i + 1) * words]) for i in range(count)]


def test_the_ngram_reader_tells_another_voice_and_not_the_same_one() -> None:
    pieces = _pieces(0, 1, 48)
    real, same_voice = pieces[::2], pieces[1::2]  # one work's passages, alternately "real" and "generated"
    other_voice = _pieces(1, 2, 24)
    apart = ngram_blind_test(real, other_voice)
    assert apart.accuracy is not None and apart.accuracy >= 0.9 and apart.texts == 48 and apart.folds == 5
    assert apart.low is not None and apart.low > 0.5
    alike = ngram_blind_test(real, same_voice)
    assert alike.accuracy is not None and alike.low is not None and alike.high is not None
    assert alike.low <= 0.5 <= alike.high or alike.accuracy < 0.75  # chance, within the noise
    assert ngram_blind_test(real[:1], same_voice[:1]).accuracy is None  # one prompt: nothing to cross-validate


@pytest.fixture(scope="module")
def tiny_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


def test_surprisal_statistics_see_the_models_own_choices(tiny_model) -> None:
    import torch

    rng = np.random.default_rng(0)
    prompts = [rng.integers(1, 64, 8).tolist() for _ in range(20)]
    out = tiny_model.generate(torch.tensor(prompts), max_new_tokens=12, do_sample=False, pad_token_id=0)
    greedy = out[:, 8:].tolist()
    random_tokens = [rng.integers(1, 64, 12).tolist() for _ in prompts]
    own = token_statistics(tiny_model, prompts, greedy)
    foreign = token_statistics(tiny_model, prompts, random_tokens)
    top1 = SURPRISAL_FEATURES.index("top1")
    assert own.shape == (20, len(SURPRISAL_FEATURES))
    assert np.allclose(own[:, top1], 1.0)  # greedy text is always the model's first choice
    assert foreign[:, top1].mean() < 0.3 and own[:, 0].mean() < foreign[:, 0].mean()
    test = surprisal_blind_test(foreign, own)
    assert test.accuracy is not None and test.accuracy >= 0.9


def test_blind_tests_report_both_readers(tiny_model) -> None:
    class Tokens:
        def decode(self, ids, skip_special_tokens=True):
            return " ".join(f"w{i}" for i in ids)

    rng = np.random.default_rng(1)
    prompts = [rng.integers(1, 64, 6).tolist() for _ in range(10)]
    real = [rng.integers(1, 64, 10).tolist() for _ in prompts]
    generated = [rng.integers(1, 64, 7).tolist() for _ in prompts[:-1]] + [[]]
    report = blind_tests(tiny_model, Tokens(), prompts, real, generated)
    assert report["pairs"] == 9 and report["dropped_pairs"] == 1 and report["mean_tokens"] == 7
    for reader in ("ngrams", "surprisal"):
        assert report[reader]["texts"] == 18 and 0 <= report[reader]["accuracy"] <= 1
        assert report[reader]["low"] <= report[reader]["accuracy"] <= report[reader]["high"]
