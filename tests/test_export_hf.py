"""The exported Hugging Face folder: weights only, loads and decodes as the checkpoint does, keys for transformers 4.x."""

from __future__ import annotations

import json
import stat

import pytest
from exporting import greedy

from dvoinik.export.hf import config_for_export, generation_config_values, write_model_folder
from dvoinik.generation.decoding import decoding_for


def test_config_for_export_adds_the_4x_keys_and_the_trained_context() -> None:
    config = {"dtype": "bfloat16", "use_cache": False, "max_position_embeddings": 2048,
              "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}
    out = config_for_export(config, 512)
    assert out["use_cache"] is True and out["max_position_embeddings"] == 512
    assert out["torch_dtype"] == "bfloat16" == out["dtype"] and out["rope_theta"] == 500000.0
    assert "rope_scaling" not in out and config["use_cache"] is False  # the input is not modified
    scaled = config_for_export({"rope_parameters": {"rope_theta": 1e4, "rope_type": "linear", "factor": 2.0}}, None)
    assert scaled["rope_scaling"] == {"rope_type": "linear", "factor": 2.0} and "max_position_embeddings" not in scaled


def test_generation_config_values_follow_the_preset() -> None:
    coherent = generation_config_values(decoding_for("coherent", max_new_tokens=64), 0, 0, 0)
    assert coherent == {"do_sample": True, "num_beams": 1, "max_new_tokens": 64, "temperature": 0.7, "top_k": 0,
                        "top_p": 0.95, "repetition_penalty": 1.15, "eos_token_id": 0, "bos_token_id": 0,
                        "pad_token_id": 0}
    beam = generation_config_values(decoding_for("beam"), 5, None, None)
    assert beam["num_beams"] == 4 and beam["no_repeat_ngram_size"] == 3 and beam["do_sample"] is False
    assert "temperature" not in beam and "bos_token_id" not in beam


@pytest.fixture(scope="module")
def exported(served_ws, tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = served_ws.runs_dir / "served" / "checkpoint-24"
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    folder = tmp_path_factory.mktemp("hf")
    files = write_model_folder(model, tokenizer, folder, decoding_for("coherent", max_new_tokens=64), 128)
    return checkpoint, folder, files


def test_folder_holds_weights_only_world_readable(exported) -> None:
    checkpoint, folder, files = exported
    assert (checkpoint / "resume" / "state.pt").is_file()  # the checkpoint has optimizer state...
    assert stat.S_IMODE((checkpoint / "model.safetensors").stat().st_mode) & 0o044 == 0o044  # and is readable
    assert sorted(p.name for p in files) == ["config.json", "generation_config.json", "model.safetensors",
                                             "tokenizer.json", "tokenizer_config.json"]  # ...the export none
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files)


def test_config_and_tokenizer_config_carry_keys_both_versions_read(exported) -> None:
    _, folder, _ = exported
    config = json.loads((folder / "config.json").read_text())
    assert config["use_cache"] is True and config["max_position_embeddings"] == 128
    assert config["torch_dtype"] == config["dtype"] == "float32"
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"  # 5.x wrote TokenizersBackend
    assert tokenizer_config["model_max_length"] == 128 and "is_local" not in tokenizer_config
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["temperature"] == 0.7 and generation["repetition_penalty"] == 1.15


def test_folder_loads_and_writes_the_checkpoints_greedy_tokens(exported) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint, folder, _ = exported
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    ids = tokenizer("В то утро она вышла из дома и", return_tensors="pt").input_ids
    assert ids.tolist() == AutoTokenizer.from_pretrained(checkpoint)("В то утро она вышла из дома и",
                                                                     return_tensors="pt").input_ids.tolist()
    outputs = []
    for where in (checkpoint, folder):
        model = AutoModelForCausalLM.from_pretrained(where).eval()
        assert model.config.use_cache is (where == folder)
        outputs.append(greedy(model, ids[0].tolist(), 64)[0])
    assert outputs[0] == outputs[1] and len(outputs[0]) == 64
