from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from memorising import memorised_text, memorising_double
from synthetic import synthetic_prose
from training_fixtures import make_workspace, save_tiny_gpt2

from dvoinik.corpus.build import load_documents
from dvoinik.generation.decoding import GenerationError, decoding_for
from dvoinik.generation.double import load_checkpoint, load_double, parse_style, set_style_mix
from dvoinik.generation.streamer import cut_at_stop
from dvoinik.generation.variants import copy_score, generate
from dvoinik.training.loop import train

GUARD = 10


@pytest.fixture(scope="module")
def memorised(tmp_path_factory: pytest.TempPathFactory):
    return memorising_double(tmp_path_factory.mktemp("memorised"))


def _prompt() -> str:
    text = memorised_text()
    return text[: text.index(" ", 60)]


def test_presets_and_settings_are_validated() -> None:
    assert decoding_for("nucleus").top_p == 0.9 and decoding_for("nucleus").temperature == 1.0
    assert decoding_for("nucleus").top_k == 0 and decoding_for("nucleus").do_sample
    assert not decoding_for("greedy").do_sample and decoding_for("beam").num_beams == 4
    assert decoding_for("coherent", temperature=0.5).temperature == 0.5
    assert not decoding_for("coherent", num_beams=3).do_sample  # beams mean beam search
    with pytest.raises(GenerationError, match="unknown preset 'hot'"):
        decoding_for("hot")
    with pytest.raises(GenerationError, match="top_p = 1.5: must be above 0 and at most 1"):
        decoding_for("nucleus", top_p=1.5)
    with pytest.raises(GenerationError, match="temperature = 0"):
        decoding_for("coherent", temperature=0)
    assert parse_style("early=0.7, late = 0.3") == {"early": 0.7, "late": 0.3}
    with pytest.raises(GenerationError, match="expected RUN=WEIGHT"):
        parse_style("early")


def test_a_memorising_model_copies_without_the_guard(memorised) -> None:
    double, ids = memorised
    variant = generate(double, _prompt(), decoding_for("greedy", max_new_tokens=80)).variants[0]
    assert memorised_text()[len(_prompt()):].startswith(variant.text)  # word for word
    assert variant.copy.tokens >= 75 and variant.copy.work == "Заученное" and variant.copy.author == "Автор"
    # In words too: all of it but a last word that the 80th token may have cut short.
    assert variant.copy.words >= len(variant.text.split()) - 1 and variant.copy.words_work == "Заученное"
    assert variant.copy.words_text in variant.text
    assert not variant.copy.missed_by_guard  # written without the guard: nothing for it to miss


def test_a_copy_the_token_guard_could_not_see_is_named(memorised) -> None:
    double, _ = memorised
    book = memorised_text()
    # The book's words, laid out anew: one line, two spaces between words (as some ebooks pad them).
    laid_out = "  ".join(book.split())
    score = copy_score(double.index, double.tokenizer, laid_out, double.words, guard=GUARD)
    assert score.tokens < GUARD <= score.words  # the token ids hide it; the words do not
    assert score.words == len(book.split()) and score.words_work == "Заученное" and score.missed_by_guard
    assert score.words_text == laid_out.rstrip(".") and score.words_tokens > score.words  # first word to last
    assert not copy_score(double.index, double.tokenizer, laid_out, double.words, guard=0).missed_by_guard  # no guard
    other = copy_score(double.index, double.tokenizer, synthetic_prose(7, 1), double.words, guard=GUARD)
    assert other.words < 3 and not other.missed_by_guard
    assert copy_score(double.index, double.tokenizer, laid_out).words is None  # no word index: not measured


@pytest.mark.parametrize("preset", ["greedy", "nucleus", "beam"])
def test_with_the_guard_no_span_of_n_tokens_is_copied(memorised, preset: str) -> None:
    double, _ = memorised
    prompt_ids = double.tokenizer(_prompt(), add_special_tokens=False).input_ids
    for seed in range(3):
        result = generate(double, _prompt(), decoding_for(preset, max_new_tokens=80, seed=seed), n=2, guard=GUARD)
        for variant in result.variants:
            assert variant.new_tokens > 0
            window = prompt_ids + list(variant.ids)
            grams = [window[i : i + GUARD] for i in range(len(prompt_ids) - GUARD + 1, len(window) - GUARD + 1)]
            assert grams and not any(double.index.contains(g) for g in grams)  # the guarantee, in token ids
            assert variant.copy.tokens < GUARD  # and in the text as `check` reads it
            assert variant.copy.words < GUARD and not variant.copy.missed_by_guard  # and in words


def test_variants_stream_stop_and_repeat_with_their_seed(memorised) -> None:
    double, _ = memorised
    decoding = decoding_for("nucleus", max_new_tokens=40, seed=5, stop=("ё",))
    pieces: dict[int, str] = {}
    result = generate(double, _prompt(), decoding, n=3, guard=GUARD,
                      on_text=lambda row, text: pieces.__setitem__(row, pieces.get(row, "") + text))
    assert [pieces.get(i, "") for i in range(3)] == [v.text for v in result.variants]
    for variant in result.variants:
        assert "ё" not in variant.text
        assert variant.finish_reason in ("stop", "length")
    assert generate(double, _prompt(), decoding, n=3, guard=GUARD).variants == result.variants
    other = generate(double, _prompt(), decoding_for("nucleus", max_new_tokens=40, seed=6), n=3, guard=GUARD)
    assert [v.text for v in other.variants] != [v.text for v in result.variants]
    assert result.to_json()["decoding"]["seed"] == 5 and len(result.to_json()["variants"]) == 3


def test_a_prompt_longer_than_the_context_keeps_its_end(memorised) -> None:
    double, _ = memorised
    long_prompt = memorised_text() * 3
    result = generate(double, long_prompt, decoding_for("greedy", max_new_tokens=12))
    assert result.prompt_tokens == double.context_length - 12


def test_bad_requests_are_refused(memorised) -> None:
    double, _ = memorised
    with pytest.raises(GenerationError, match="--guard 1"):
        generate(double, "а", decoding_for("greedy", max_new_tokens=4), guard=1)
    with pytest.raises(GenerationError, match="at most num_beams"):
        generate(double, "а", decoding_for("beam", max_new_tokens=4), n=5)
    with pytest.raises(GenerationError, match="does not fit"):
        generate(double, "а", decoding_for("greedy", max_new_tokens=600))


def test_cut_at_stop() -> None:
    assert cut_at_stop("один. два", (".", "два")) == ("один", True)
    assert cut_at_stop("один", (".",)) == ("один", False)


def test_a_workspace_run_loads_with_its_copy_index(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    train(ws, run="g", overrides={"max_steps": 4})
    double = load_double(ws)
    assert double.checkpoint == "g/checkpoint-4" and double.index is not None and double.words is not None
    result = generate(double, "Бава", decoding_for("coherent", max_new_tokens=12, seed=3), n=2, guard=GUARD)
    assert len(result.variants) == 2 and all(v.copy is not None for v in result.variants)


def test_style_mix_of_two_lora_runs(tmp_path: Path) -> None:
    import torch

    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    for run, seed in (("early", 1), ("late", 2)):
        train(ws, run=run, overrides={"base": str(base), "method": "lora", "max_steps": 4, "seed": seed,
                                      "learning_rate": 5e-2})
    ids = torch.tensor([[5, 6, 7, 8]])

    def logits(double) -> np.ndarray:
        with torch.no_grad():
            return double.model(input_ids=ids).logits.numpy()

    early = logits(load_checkpoint(ws.runs_dir / "early" / "checkpoint-4"))
    late = logits(load_checkpoint(ws.runs_dir / "late" / "checkpoint-4"))
    assert not np.allclose(early, late, atol=1e-4)
    assert np.allclose(logits(load_double(ws, style={"early": 1.0, "late": 0.0})), early, atol=1e-5)
    half = load_double(ws, style={"early": 0.5, "late": 0.5})
    assert half.checkpoint == "early=0.5+late=0.5"
    mixed = logits(half)
    assert not np.allclose(mixed, early, atol=1e-4) and not np.allclose(mixed, late, atol=1e-4)
    text = generate(half, "Бава", decoding_for("greedy", max_new_tokens=6)).variants[0].text
    assert isinstance(text, str)

    # The studio's sliders re-mix the loaded adapters in place, and come back to a mix built before.
    set_style_mix(half, {"early": 1.0, "late": 0.0})
    assert half.checkpoint == "early=1+late=0" and np.allclose(logits(half), early, atol=1e-5)
    set_style_mix(half, {"early": 0.5, "late": 0.5})
    assert np.allclose(logits(half), mixed, atol=1e-5)
    with pytest.raises(GenerationError, match="not among the loaded runs"):
        set_style_mix(half, {"other": 1.0})
    with pytest.raises(GenerationError, match="other than 0"):
        set_style_mix(half, {"early": 0.0})

    train(ws, run="full", overrides={"max_steps": 2})
    with pytest.raises(GenerationError, match="mixes LoRA adapters"):
        load_double(ws, style={"early": 0.5, "full": 0.5})


def test_a_stop_string_ends_the_variant_where_it_is_written(memorised) -> None:
    double, _ = memorised
    rest = memorised_text()[len(_prompt()):]
    stop = rest.split()[6]  # a word the memorising model writes a few tokens in
    decoding = decoding_for("greedy", max_new_tokens=80, stop=("нет такого" * 100, stop))
    variant = generate(double, _prompt(), decoding).variants[0]
    assert variant.finish_reason == "stop" and variant.text == rest[: rest.index(stop)]
    assert variant.new_tokens < 40  # it stopped there, rather than writing 80 tokens and cutting them after


def test_stop_strings_are_looked_for_only_where_they_can_end() -> None:
    import torch

    from dvoinik.generation.streamer import StopStringsCriterion

    class Letters:  # a tokenizer whose token i is the letter chr(1072 + i)
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(1072 + i) for i in ids)

    criterion = StopStringsCriterion(Letters(), ("бвг", "я" * 1000), prompt_length=1)
    rows = [[0, 0], [0, 1]]
    for token in (2, 3):  # row 1 spells а|бвг: it stops when г arrives; row 0 never does
        rows = [rows[0] + [0], rows[1] + [token]]
        done = criterion(torch.tensor(rows)).tolist()
    assert done == [False, True]
