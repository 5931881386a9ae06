"""The static-cache decoding loop against `model.generate`: the same tokens, the guard, streaming, stops, aborts."""

from __future__ import annotations

import pytest
import torch
from memorising import memorised_text, memorising_double

from dvoinik.generation import fast
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.variants import generate, prompt_ids, sample_ids

GUARD = 10


@pytest.fixture(scope="module")
def memorised(tmp_path_factory: pytest.TempPathFactory):
    double, _ = memorising_double(tmp_path_factory.mktemp("fast"))
    text = memorised_text()
    prompt = text[: text.index(" ", 60)]
    return double, prompt, prompt_ids(double, prompt, 60)


@pytest.mark.parametrize(("preset", "guard"), [("greedy", 0), ("greedy", GUARD), ("coherent", GUARD), ("nucleus", 0)])
def test_the_same_tokens_as_generate(memorised, preset: str, guard: int) -> None:
    double, _, ids = memorised
    decoding = decoding_for(preset, max_new_tokens=40, seed=7)
    expected = sample_ids(double, ids, decoding, guard, n=3, fast=False)
    assert sample_ids(double, ids, decoding, guard, n=3, fast=True) == expected
    assert sample_ids(double, ids, decoding, guard, n=3, fast=True) == expected  # the cache reused, reset


def test_the_guard_bans_copying_on_the_fast_path_too(memorised) -> None:
    double, prompt, ids = memorised
    free = sample_ids(double, ids, decoding_for("greedy", max_new_tokens=40), 0, fast=True)[0]
    assert double.index.longest_span(ids[0].tolist() + free).length >= 40  # it would copy the book
    guarded = sample_ids(double, ids, decoding_for("greedy", max_new_tokens=40), GUARD, fast=True)[0]
    window = ids[0].tolist() + guarded
    grams = [window[i : i + GUARD] for i in range(ids.shape[1] - GUARD + 1, len(window) - GUARD + 1)]
    assert grams and not any(double.index.contains(g) for g in grams)


def test_streaming_stop_strings_and_abort(memorised, monkeypatch: pytest.MonkeyPatch) -> None:
    double, prompt, ids = memorised
    monkeypatch.setattr(fast, "available", lambda model, beams: beams == 1)  # as on a GPU
    decoding = decoding_for("nucleus", max_new_tokens=40, seed=5, stop=("ё",))
    pieces: dict[int, str] = {}
    result = generate(double, prompt, decoding, n=3, guard=GUARD,
                      on_text=lambda row, text: pieces.__setitem__(row, pieces.get(row, "") + text))
    assert [pieces.get(i, "") for i in range(3)] == [v.text for v in result.variants]
    monkeypatch.undo()
    assert generate(double, prompt, decoding, n=3, guard=GUARD).variants == result.variants  # generate's own path

    def stop_after(calls: int):
        asked = {"n": 0}

        def should_stop() -> bool:  # asked once per token, as generate asks it
            asked["n"] += 1
            return asked["n"] > calls

        return should_stop

    greedy = decoding_for("greedy", max_new_tokens=40)
    rows = sample_ids(double, ids, greedy, should_stop=stop_after(5), fast=True)
    assert rows == sample_ids(double, ids, greedy, should_stop=stop_after(5), fast=False) and len(rows[0]) < 10


def test_one_cache_per_model_batch_and_length_bucket(memorised) -> None:
    double, _, _ = memorised
    a = fast.decoder_for(double.model, 2, 100, compile=False)
    assert fast.decoder_for(double.model, 2, 200, compile=False) is a  # the same bucket of 256 positions
    assert fast.decoder_for(double.model, 3, 100, compile=False) is not a
    assert not fast.available(double.model, 1) or torch.cuda.is_available()  # on CUDA only
