"""GGUF export: read back with gguf's own reader, its tensors and vocabulary equal the checkpoint's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from exporting import prose, save_tiny_llama, save_tiny_qwen2
from training_fixtures import save_tiny_gpt2

from dvoinik.export.gguf_file import (
    LLAMA3_PATTERN,
    QWEN2_PATTERN,
    gguf_architecture,
    gguf_vocabulary,
    permute_for_rope,
    pre_tokenizer_name,
    unpermute_rope,
    write_gguf,
)
from dvoinik.export.options import ExportError


def load(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def read(path: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, str]]:
    """(metadata, tensors as float32 in numpy order, GGML type names) of a GGUF file."""
    import gguf

    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors, types = {}, {}
    for tensor in reader.tensors:
        tensors[tensor.name] = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        types[tensor.name] = tensor.tensor_type.name
    return fields, tensors, types


def llama_names(layers: int) -> dict[str, str]:
    """GGUF name → transformers name for a Llama or Qwen2, written out by hand (not by the code under test)."""
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    for i in range(layers):
        for gguf_name, hf in (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
                              ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
                              ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj")):
            names[f"blk.{i}.{gguf_name}.weight"] = f"model.layers.{i}.{hf}.weight"
            names[f"blk.{i}.{gguf_name}.bias"] = f"model.layers.{i}.{hf}.bias"
        names[f"blk.{i}.attn_norm.weight"] = f"model.layers.{i}.input_layernorm.weight"
        names[f"blk.{i}.ffn_norm.weight"] = f"model.layers.{i}.post_attention_layernorm.weight"
    return names


def close(actual: np.ndarray, expected: np.ndarray, kind: str) -> bool:
    if kind == "F32":
        return np.array_equal(actual, expected)
    scale = float(np.abs(expected).max()) or 1.0
    return np.allclose(actual, expected, atol=scale * (2e-3 if kind == "F16" else 1e-2), rtol=0)


@pytest.fixture(scope="module")
def micro(served_ws):
    """The served workspace's last checkpoint of the built-in micro model (block 128, tied embeddings)."""
    folder = served_ws.runs_dir / "served" / "checkpoint-24"
    model, tokenizer = load(folder)
    return folder, model, tokenizer


@pytest.mark.parametrize("gguf_type", ["f32", "f16", "q8_0"])
def test_builtin_model_reads_back_equal(micro, tmp_path: Path, gguf_type: str) -> None:
    folder, model, tokenizer = micro
    path = tmp_path / "m.gguf"
    summary = write_gguf(path, model, tokenizer, "Двойник", 128, gguf_type)
    fields, tensors, types = read(path)

    assert fields["general.architecture"] == "llama" and fields["general.name"] == "Двойник"
    assert fields["llama.context_length"] == 128 == summary.context_length  # the trained block, not 2048
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.tokens"] == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"] == [" ".join(m) for m in merges]
    assert fields["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id == fields["tokenizer.ggml.bos_token_id"]
    assert fields["tokenizer.ggml.add_bos_token"] is False  # dvoinik's tokenizer adds no BOS: neither may llama.cpp
    assert fields["tokenizer.ggml.token_type"][tokenizer.eos_token_id] == 3  # control
    assert fields["llama.attention.head_count"] == 2 and fields["llama.rope.dimension_count"] == 32

    names = llama_names(2)
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert len(tensors) == len(state) - 1
    for name, array in tensors.items():
        expected = state[names[name]]
        if ".attn_q." in name or ".attn_k." in name:
            assert not np.array_equal(array, expected)  # permuted for llama.cpp's RoPE
            array = unpermute_rope(array, 2)
        assert close(array, expected, types[name]), name
    if gguf_type == "q8_0":
        assert types["token_embd.weight"] == "Q8_0" and types["blk.0.ffn_down.weight"] == "F16"  # 176 columns
        assert types["blk.0.attn_norm.weight"] == "F32"


def test_permutation_round_trips() -> None:
    weight = np.arange(8 * 3 * 5, dtype=np.float32).reshape(8 * 3, 5)
    assert np.array_equal(unpermute_rope(permute_for_rope(weight, 3), 3), weight)
    # Head 0's rows 0..3 (first half 0,1, second half 2,3) become pairs (0,2),(1,3).
    assert permute_for_rope(np.arange(4.0).reshape(4, 1), 1).ravel().tolist() == [0, 2, 1, 3]


def test_llama_with_grouped_query_attention_and_untied_output(tmp_path: Path) -> None:
    model, tokenizer = load(save_tiny_llama(tmp_path / "llama"))
    write_gguf(tmp_path / "m.gguf", model, tokenizer, "llama", None, "f32")
    fields, tensors, _ = read(tmp_path / "m.gguf")
    assert fields["llama.attention.head_count_kv"] == 2 and fields["llama.context_length"] == 256
    names = llama_names(2)
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    assert "output.weight" in tensors
    for name, array in tensors.items():
        heads = 4 if ".attn_q." in name else 2
        if ".attn_q." in name or ".attn_k." in name:
            array = unpermute_rope(array, heads)
        assert np.array_equal(array, state[names[name]]), name


def test_qwen2_keeps_biases_unpermuted_and_pads_the_vocabulary(tmp_path: Path) -> None:
    model, tokenizer = load(save_tiny_qwen2(tmp_path / "qwen2"))
    write_gguf(tmp_path / "m.gguf", model, tokenizer, "qwen", None, "f16")
    fields, tensors, types = read(tmp_path / "m.gguf")
    assert fields["general.architecture"] == "qwen2" and fields["tokenizer.ggml.pre"] == "qwen2"
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == model.config.vocab_size == len(tokenizer) + 8
    assert tokens[-1] == f"[PAD{len(tokens) - 1}]" and fields["tokenizer.ggml.token_type"][-1] == 5  # unused
    names = llama_names(2)
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    assert "blk.0.attn_q.bias" in tensors and "output.weight" not in tensors
    for name, array in tensors.items():
        assert close(array, state[names[name]], types[name]), name  # Qwen2: no permutation


def test_gpt2_conv1d_weights_are_transposed(tmp_path: Path) -> None:
    model, tokenizer = load(save_tiny_gpt2(tmp_path / "gpt2", prose()))
    write_gguf(tmp_path / "m.gguf", model, tokenizer, "gpt2", 32, "f32")
    fields, tensors, _ = read(tmp_path / "m.gguf")
    assert fields["gpt2.context_length"] == 64  # its position table's rows, whatever else is asked
    state = {k: v.float().numpy() for k, v in model.state_dict().items()}
    assert np.array_equal(tensors["blk.1.attn_qkv.weight"], state["transformer.h.1.attn.c_attn.weight"].T)
    assert np.array_equal(tensors["blk.0.ffn_down.weight"], state["transformer.h.0.mlp.c_proj.weight"].T)
    assert np.array_equal(tensors["position_embd.weight"], state["transformer.wpe.weight"])
    assert np.array_equal(tensors["blk.0.attn_norm.bias"], state["transformer.h.0.ln_1.bias"])
    assert "output.weight" not in tensors


def test_other_architectures_are_refused_in_one_line() -> None:
    from transformers import MistralConfig

    with pytest.raises(ExportError) as caught:
        gguf_architecture(MistralConfig(architectures=["MistralForCausalLM"]))
    message = str(caught.value)
    assert "MistralForCausalLM" in message and "Llama, Qwen2 and GPT-2" in message and "\n" not in message


def spec(pre: dict, normalizer: dict | None = None, ignore_merges: bool = False) -> dict:
    return {"pre_tokenizer": pre, "normalizer": normalizer, "model": {"type": "BPE", "ignore_merges": ignore_merges}}


def split_then_bytes(pattern: str) -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}


def test_pre_tokenizers_are_recognised_by_what_they_do() -> None:
    gpt2 = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    assert pre_tokenizer_name(spec(gpt2)) == "gpt-2"
    assert pre_tokenizer_name(spec({**gpt2, "add_prefix_space": True})) is None  # " " before the text: another split
    assert pre_tokenizer_name(spec(gpt2, {"type": "Lowercase"})) is None
    assert pre_tokenizer_name(spec(split_then_bytes(QWEN2_PATTERN), {"type": "NFC"})) == "qwen2"
    assert pre_tokenizer_name(spec(split_then_bytes(LLAMA3_PATTERN), ignore_merges=True)) == "llama-bpe"
    assert pre_tokenizer_name(spec(split_then_bytes(r"\w+|\s+"))) is None
    assert pre_tokenizer_name(spec({"type": "Metaspace", "replacement": "▁"})) is None


def test_a_sentencepiece_style_tokenizer_is_refused() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(vocab={"<unk>": 0, "▁a": 1}, merges=[], byte_fallback=True, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    with pytest.raises(ExportError, match="byte fallback"):
        gguf_vocabulary(PreTrainedTokenizerFast(tokenizer_object=backend), 2)
