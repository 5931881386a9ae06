"""Author markers: special tokens added to a tokenizer, read back from a checkpoint, and rows for them in a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from dvoinik.tokens import train_bpe_tokenizer
from dvoinik.voices import add_marker_rows, add_markers, marker, markers_of

TEXTS = ["Туман над рекой поднимался медленно.", "В 9:15 гражданин Мухин входит в контору."] * 20


def test_markers_get_ids_after_the_vocabulary_and_come_back_from_a_saved_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = train_bpe_tokenizer(lambda: iter(TEXTS), 300)
    size = len(tokenizer)
    assert markers_of(tokenizer) == {}
    ids = add_markers(tokenizer, ["Варвара Ключарёва", "Семён Рубцов"])
    assert ids == {"Варвара Ключарёва": size, "Семён Рубцов": size + 1}
    encoded = tokenizer(marker("Семён Рубцов") + "Туман", add_special_tokens=False).input_ids
    assert encoded[0] == size + 1  # one token, never split
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "Туман"
    tokenizer.save_pretrained(tmp_path)
    assert markers_of(AutoTokenizer.from_pretrained(tmp_path)) == ids  # the checkpoint's tokenizer is the record


@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_start_at_the_mean_of_the_old_ones(tied: bool) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    before = model.get_input_embeddings().weight.detach().clone()
    add_marker_rows(model, 53)
    weight = model.get_input_embeddings().weight
    assert weight.shape == (53, 16) and model.config.vocab_size == 53
    assert torch.equal(weight[:50], before)
    assert torch.allclose(weight[50:], before.mean(dim=0).expand(3, -1))
    assert model.get_output_embeddings().weight.shape[0] == 53
    add_marker_rows(model, 40)  # never shrinks
    assert model.get_input_embeddings().weight.shape[0] == 53
