"""Choosing a voice: names and mixes as users write them, the marker first in the context, a mix of voices."""

from __future__ import annotations

import pytest

from dvoinik.generation.decoding import GenerationError
from dvoinik.generation.voices import (
    check_voice,
    default_voice,
    describe,
    parse_voice,
    sample_mixed,
    voiced_ids,
)

VOICES = {"Варвара Ключарёва": 100, "Семён Рубцов": 101, "Иван Рубцов-Младший": 102}


def test_a_voice_is_named_in_full_in_any_case_or_by_a_part_only_it_has() -> None:
    assert parse_voice("Семён Рубцов", VOICES) == {"Семён Рубцов": 1.0}
    assert parse_voice("варвара ключарёва", VOICES) == {"Варвара Ключарёва": 1.0}
    assert parse_voice("Ключарёва", VOICES) == {"Варвара Ключарёва": 1.0}
    with pytest.raises(GenerationError, match="matches several authors"):
        parse_voice("Рубцов", VOICES)
    with pytest.raises(GenerationError, match="no voice 'Толстой' \\(voices: Варвара Ключарёва, Семён Рубцов"):
        parse_voice("Толстой", VOICES)
    with pytest.raises(GenerationError, match="this run has no voices"):
        parse_voice("Рубцов", {})


def test_a_mix_is_weights_that_sum_to_one() -> None:
    assert parse_voice("Ключарёва=0.7, Семён=0.3", VOICES) == pytest.approx({"Варвара Ключарёва": 0.7, "Семён Рубцов": 0.3})
    assert parse_voice("Ключарёва=3,Семён=1,Иван=0", VOICES) == pytest.approx({"Варвара Ключарёва": 0.75,
                                                                              "Семён Рубцов": 0.25})
    for bad in ("Ключарёва=-1", "Ключарёва=x", "=0.5", "Ключарёва=0"):
        with pytest.raises(GenerationError):
            parse_voice(bad, VOICES)
    assert check_voice({"семён рубцов": 2, "Ключарёва": 2}, VOICES) == {"Семён Рубцов": 0.5, "Варвара Ключарёва": 0.5}
    assert default_voice(VOICES) == {"Варвара Ключарёва": 1.0} and default_voice({}) is None
    assert describe({"A": 0.7, "B": 0.3}) == "A=0.7+B=0.3" and describe({"A": 1.0}) == "A"


def test_the_marker_goes_first_and_the_prompt_gives_up_a_token_when_it_must() -> None:
    import torch

    ids = torch.tensor([[5, 6, 7, 8]])
    assert voiced_ids(VOICES, ids, {"Семён Рубцов": 1.0}, 4, budget=16, eos_id=0).tolist() == [[101, 5, 6, 7, 8]]
    # 1 + 4 + 4 would pass a budget of 8: the prompt's first token goes.
    assert voiced_ids(VOICES, ids, {"Семён Рубцов": 1.0}, 4, budget=8, eos_id=0).tolist() == [[101, 6, 7, 8]]
    # An empty prompt (just end-of-text) becomes the marker alone, as training blocks begin.
    assert voiced_ids(VOICES, torch.tensor([[0]]), {"Варвара Ключарёва": 1.0}, 4, 8, 0).tolist() == [[100]]


def tiny_double():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from dvoinik.generation.double import Double

    class Tokenizer:  # decoding is all a mix needs of a tokenizer (for stop strings)
        eos_token_id = 0

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(str(i) for i in ids)

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=110, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32)).eval()
    return Double(model, Tokenizer(), "tiny", voices=VOICES)


def test_a_mixed_voice_draws_from_the_weighted_logits_of_one_pass_per_voice() -> None:
    import torch

    from dvoinik.generation.decoding import decoding_for

    double = tiny_double()
    prompt = torch.tensor([[5, 6, 7]])
    mix = {"Варвара Ключарёва": 0.25, "Семён Рубцов": 0.75}
    rows = sample_mixed(double, prompt, mix, decoding_for("greedy", max_new_tokens=4), n=2)
    expected, text = [], [5, 6, 7]
    with torch.no_grad():
        for _ in range(4):  # by hand: each voice's logits after its own marker, weighted, the best token taken
            logits = [double.model(input_ids=torch.tensor([[marker, *text]])).logits[0, -1] for marker in (100, 101)]
            combined = 0.25 * logits[0] + 0.75 * logits[1]
            combined[list(VOICES.values())] = -float("inf")
            token = int(combined.argmax())
            expected.append(token)
            text.append(token)
    assert rows == [expected, expected]  # greedy: both variants alike, every pass took the same tokens
    sampled = sample_mixed(double, torch.tensor([[5, 6, 7], [8, 9, 10]]), mix,
                           decoding_for("nucleus", max_new_tokens=6, seed=3), n=2)
    assert len(sampled) == 4 and all(len(r) == 6 for r in sampled)
    assert not set(VOICES.values()) & {t for r in sampled for t in r}  # a marker is never written
    assert sampled == sample_mixed(double, torch.tensor([[5, 6, 7], [8, 9, 10]]), mix,
                                   decoding_for("nucleus", max_new_tokens=6, seed=3), n=2)  # seeded
    with pytest.raises(GenerationError, match="beam search takes one voice"):
        sample_mixed(double, prompt, mix, decoding_for("beam", max_new_tokens=4))
