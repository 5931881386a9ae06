from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_fixtures import save_tiny_gpt2

from dvoinik.faults import DamagedFileError
from dvoinik.training.models import (
    ModelError,
    apply_lora,
    check_combination,
    count_parameters,
    load_base_model,
    load_checkpoint_model,
    lora_target_modules,
    new_model,
)
from dvoinik.workspace import TrainSettings


def test_built_in_models_are_llama_with_sdpa_and_seeded() -> None:
    a = new_model("micro", vocab_size=300, eos_id=0, block_size=64, seed=5)
    b = new_model("micro", vocab_size=300, eos_id=0, block_size=64, seed=5)
    assert a.config.model_type == "llama" and a.config._attn_implementation == "sdpa"
    assert a.config.tie_word_embeddings and a.config.eos_token_id == 0
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    trainable, total = count_parameters(a)
    assert trainable == total > 0


def test_lora_on_a_built_in_model_does_not_fit() -> None:
    check_combination("some/hub-model", "lora")
    check_combination("tiny", "full")
    with pytest.raises(ModelError, match="adapts a pretrained model"):
        check_combination("tiny", "lora")
    with pytest.raises(ModelError, match="unknown method 'qlora'"):
        check_combination("tiny", "qlora")


def test_lora_targets_by_architecture_or_by_the_user(tmp_path: Path) -> None:
    model = load_base_model(str(save_tiny_gpt2(tmp_path / "g", ["текст"] * 20)))
    assert lora_target_modules(model, "") == ["c_attn"]
    assert lora_target_modules(model, " c_attn , c_proj ") == ["c_attn", "c_proj"]
    peft_model = apply_lora(model, TrainSettings(method="lora", lora_rank=2))
    trainable, total = count_parameters(peft_model)
    assert 0 < trainable < total / 10
    with pytest.raises(ModelError, match="do not fit this model"):
        apply_lora(load_base_model(str(tmp_path / "g")), TrainSettings(method="lora", lora_targets="no_such_layer"))


def test_an_unknown_architecture_needs_targets_named() -> None:
    class Model:
        class config:
            model_type = "never-heard-of-it"

    with pytest.raises(ModelError, match="no default LoRA target modules .*lora_targets"):
        lora_target_modules(Model(), "")


def test_a_local_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="cannot load the model in"):
        load_base_model(str(tmp_path / "empty"))
    with pytest.raises(DamagedFileError, match="empty: damaged file \\(no weights"):  # a checkpoint: one line naming it
        load_checkpoint_model(tmp_path / "empty")
