"""The static-cache decoding loop against `model.generate`: the same tokens, the guard, streaming, stops, aborts.

The model is an untrained tiny Llama; its "training text" (the copy index) is what it writes
greedily itself, so with the guard on it must leave its own path at once, and the guard's
bans are certain to fire.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import synthetic_prose

from dvoinik.generation import fast
from dvoinik.generation.copyindex import SourceWork, write_copy_index
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double
from dvoinik.generation.variants import generate, prompt_ids, sample_ids
from dvoinik.tokens import train_bpe_tokenizer

GUARD = 6


@pytest.fixture(scope="module")
def double(tmp_path_factory: pytest.TempPathFactory):
    """(a double whose copy index holds its own greedy continuation of the prompt, the prompt, its ids)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_bpe_tokenizer(lambda: iter([synthetic_prose(i, 4) for i in range(4)]), 300)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    prompt = synthetic_prose(1, 1)[:80]
    plain = Double(model, tokenizer, "tiny", None, 256)
    ids = prompt_ids(plain, prompt, 40)
    own = ids[0].tolist() + sample_ids(plain, ids, decoding_for("greedy", max_new_tokens=40), fast=False)[0]
    index = write_copy_index(np.asarray(own, dtype=np.uint16), [SourceWork("w", "Автор", "Своё", 0, len(own))],
                             tmp_path_factory.mktemp("fast") / "copy-index", "test")
    return Double(model, tokenizer, "tiny", index, 256), prompt, ids


@pytest.mark.parametrize(("preset", "guard"), [("greedy", 0), ("greedy", GUARD), ("coherent", GUARD), ("nucleus", 0)])
def test_the_same_tokens_as_generate(double, preset: str, guard: int) -> None:
    double, _, ids = double
    decoding = decoding_for(preset, max_new_tokens=30, seed=7)
    expected = sample_ids(double, ids, decoding, guard, n=3, fast=False)
    assert sample_ids(double, ids, decoding, guard, n=3, fast=True) == expected
    assert sample_ids(double, ids, decoding, guard, n=3, fast=True) == expected  # the cache reused, reset


def test_tokens_the_model_config_suppresses_are_suppressed_on_the_fast_path_too(double) -> None:
    """A voices run's markers (suppress_tokens) and an interview's turn endings (begin_suppress_tokens)."""
    double, _, ids = double
    greedy = decoding_for("greedy", max_new_tokens=20)
    free = sample_ids(double, ids, greedy, fast=False)[0]
    config = double.model.generation_config
    try:
        config.suppress_tokens, config.begin_suppress_tokens = [free[1]], [free[0]]
        expected = sample_ids(double, ids, greedy, fast=False)[0]
        assert expected[0] != free[0] and free[1] not in expected
        assert sample_ids(double, ids, greedy, fast=True)[0] == expected
    finally:
        config.suppress_tokens = config.begin_suppress_tokens = None


def test_the_guard_bans_copying_on_the_fast_path_too(double) -> None:
    double, _, ids = double
    greedy = decoding_for("greedy", max_new_tokens=30)
    free = sample_ids(double, ids, greedy, 0, fast=True)[0]
    assert double.index.longest_span(ids[0].tolist() + free).length >= 30  # unguarded, it writes its index
    guarded = sample_ids(double, ids, greedy, GUARD, fast=True)[0]
    window = ids[0].tolist() + guarded
    grams = [window[i : i + GUARD] for i in range(ids.shape[1] - GUARD + 1, len(window) - GUARD + 1)]
    assert grams and not any(double.index.contains(g) for g in grams)


def test_streaming_stop_strings_and_abort(double, monkeypatch: pytest.MonkeyPatch) -> None:
    double, prompt, ids = double
    monkeypatch.setattr(fast, "worth_it", lambda model, beams, steps: beams == 1)  # generate() as on a served GPU
    unstopped = generate(double, prompt, decoding_for("nucleus", max_new_tokens=30, seed=5), n=3, guard=GUARD)
    text = unstopped.variants[0].text
    stop = text[4:6]  # a stop string the first variant meets
    decoding = decoding_for("nucleus", max_new_tokens=30, seed=5, stop=(stop,))
    pieces: dict[int, str] = {}
    result = generate(double, prompt, decoding, n=3, guard=GUARD,
                      on_text=lambda row, text: pieces.__setitem__(row, pieces.get(row, "") + text))
    assert [pieces.get(i, "") for i in range(3)] == [v.text for v in result.variants]
    assert result.variants[0].finish_reason == "stop" and result.variants[0].text == text[: text.index(stop)]
    monkeypatch.undo()
    assert generate(double, prompt, decoding, n=3, guard=GUARD).variants == result.variants  # generate's own path

    def stop_after(calls: int):
        asked = {"n": 0}

        def should_stop() -> bool:  # asked once per token, as generate asks it
            asked["n"] += 1
            return asked["n"] > calls

        return should_stop

    greedy = decoding_for("greedy", max_new_tokens=30)
    rows = sample_ids(double, ids, greedy, should_stop=stop_after(5), fast=True)
    assert rows == sample_ids(double, ids, greedy, should_stop=stop_after(5), fast=False) and len(rows[0]) < 10


def test_one_cache_per_model_batch_and_length_bucket(double) -> None:
    double, _, _ = double
    a = fast.decoder_for(double.model, 2, 100, compile=False)
    assert fast.decoder_for(double.model, 2, 200, compile=False) is a  # the same bucket of 256 positions
    assert fast.decoder_for(double.model, 3, 100, compile=False) is not a
    assert not fast.available(double.model, 1) or torch.cuda.is_available()  # on CUDA only
    assert not fast.worth_it(double.model, 1, 10**6) or torch.cuda.is_available()


def test_the_step_is_compiled_only_for_a_model_that_stays(double, monkeypatch: pytest.MonkeyPatch) -> None:
    double, _, _ = double
    monkeypatch.setattr(fast, "available", lambda model, beams: True)  # as on a GPU
    monkeypatch.setattr(fast, "_STEPS", fast.weakref.WeakKeyDictionary())
    asked = [fast.worth_it(double.model, 1, 200) for _ in range(12)]  # one command's worth, then a served model's
    assert asked == [False] * 10 + [True] * 2  # generate for the first 2,000 steps
