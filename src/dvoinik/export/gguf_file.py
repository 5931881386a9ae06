"""A GGUF file (llama.cpp, KoboldCpp, LM Studio, Ollama) written with the `gguf` package, pure Python.

llama.cpp's own converter recognises a tokenizer by hashing how it splits a test text,
so it refuses every tokenizer trained here; forced to its default pre-tokenizer it
splits Russian differently from the HF tokenizer. This writer reads the tokenizer's
definition instead (`tokenizer.json`): a byte-level BPE whose pre-tokenizer is GPT-2's
regex (dvoinik's own, GPT-2's, ruGPT-3's) is `gpt-2` to llama.cpp; Qwen2's and Llama 3's
split-then-byte-level pipelines are `qwen2` and `llama-bpe`. Anything else is refused
rather than written wrong.

The weights follow llama.cpp's layout for each architecture:

- `llama`: q and k rows permuted, because llama.cpp rotates adjacent pairs where
  transformers rotates halves (`permute_for_rope`);
- `qwen2`: as stored (llama.cpp rotates halves for it), with the q/k/v biases;
- `gpt2`: the Conv1D weights transposed to [out, in].

Tied embeddings are written once (`token_embd`; llama.cpp reuses it as the output).
Norms and biases stay f32; matrices are f32, f16 or Q8_0 (a matrix whose rows are not a
multiple of 32 cannot be Q8_0 and is written f16, as llama.cpp's converter does).
Tensors are converted and written one at a time, so memory holds the model once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.export.options import ExportError

# transformers class → GGUF architecture
ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "GPT2LMHeadModel": "gpt2"}
SUPPORTED = "the built-in models and the Llama, Qwen2 and GPT-2 families (LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel)"

# The split patterns of Qwen2's and Llama 3's tokenizers, as their tokenizer.json spells them.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")  # buffers, not weights
Q8_0_BLOCK = 32

ProgressCallback = Callable[[int, int], None]  # (tensors written, total)


@dataclass(frozen=True)
class Vocabulary:
    """The tokenizer as GGUF stores it."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool


@dataclass(frozen=True)
class GGUFSummary:
    path: Path
    architecture: str
    tensors: int
    types: dict[str, int]  # GGML type name → tensors stored in it
    context_length: int
    pre_tokenizer: str


# ---------------------------------------------------------------- architecture


def gguf_architecture(config: Any, class_name: str | None = None) -> str:
    """The GGUF architecture of a transformers config (or of the model's class, for a config that names none);
    anything else is refused in one line."""
    names = list(getattr(config, "architectures", None) or ([class_name] if class_name else []))
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    shown = ", ".join(names) or getattr(config, "model_type", "unknown")
    raise ExportError(f"GGUF export of {shown} is not supported; dvoinik exports {SUPPORTED}. "
                      "The HF folder (--format hf) works for every architecture")


def permute_for_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q or k projection reordered from transformers' rotate-half RoPE to llama.cpp's adjacent pairs."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def unpermute_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of `permute_for_rope` (to compare a GGUF's q/k with the checkpoint's)."""
    return weight.reshape(heads, weight.shape[0] // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _rope_settings(config: Any) -> tuple[float, str, float | None]:
    """(theta, scaling type, factor) from a 5.x `rope_parameters` or a 4.x `rope_theta`/`rope_scaling`."""
    params = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    factor = params.get("factor", scaling.get("factor"))
    if kind not in ("default", "linear"):
        raise ExportError(f"RoPE scaling {kind!r} is not supported by dvoinik's GGUF export (default and linear are); "
                          "llama.cpp's convert_hf_to_gguf.py converts the HF folder")
    return float(theta), kind, factor


# ---------------------------------------------------------------- tokenizer


def pre_tokenizer_name(spec: dict) -> str | None:
    """llama.cpp's name for the pre-tokenizer of a tokenizer.json, or None when it has none that splits alike."""
    pre = spec.get("pre_tokenizer") or {}
    normalizer = spec.get("normalizer")
    ignore_merges = bool(spec.get("model", {}).get("ignore_merges", False))
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2" if normalizer is None and not ignore_merges else None
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 2:
        split, byte_level = pre["pretokenizers"]
        if split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert") \
                or byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex", True) \
                or byte_level.get("add_prefix_space", False):
            return None
        pattern = (split.get("pattern") or {}).get("Regex")
        if pattern == QWEN2_PATTERN and normalizer in (None, {"type": "NFC"}) and not ignore_merges:
            return "qwen2"
        if pattern == LLAMA3_PATTERN and normalizer is None and ignore_merges:
            return "llama-bpe"
    return None


def gguf_vocabulary(tokenizer: Any, vocab_size: int) -> Vocabulary:
    """The tokenizer's tokens (padded to the model's embedding rows), types, merges, special ids and pre-tokenizer."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"the tokenizer ({type(tokenizer).__name__}) has no tokenizer.json; GGUF export needs a "
                          "fast (Rust) byte-level BPE tokenizer")
    spec = json.loads(backend.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ExportError(f"the tokenizer is a {model.get('type', '?')} model"
                          f"{' with byte fallback (SentencePiece style)' if model.get('byte_fallback') else ''}; "
                          "GGUF export supports byte-level BPE tokenizers (GPT-2, Qwen2, Llama 3 style)")
    pre = pre_tokenizer_name(spec)
    if pre is None:
        raise ExportError(f"the tokenizer's pre-tokenizer ({json.dumps(spec.get('pre_tokenizer'))[:120]}) splits text in "
                          "a way no llama.cpp pre-tokenizer does; supported: byte-level BPE with GPT-2's, Qwen2's or "
                          "Llama 3's split")
    by_id: dict[int, str] = {int(i): token for token, i in model.get("vocab", {}).items()}
    types = {i: int(gguf.TokenType.NORMAL) for i in by_id}
    for added in spec.get("added_tokens", []):
        by_id[int(added["id"])] = added["content"]
        types[int(added["id"])] = int(gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)
    if by_id and max(by_id) >= vocab_size:
        raise ExportError(f"the tokenizer has token id {max(by_id)}, beyond the model's {vocab_size} embedding rows")
    tokens, token_types = [], []
    for i in range(vocab_size):  # rows no token uses (a vocabulary padded for speed) get placeholder names
        tokens.append(by_id.get(i, f"[PAD{i}]"))
        token_types.append(types.get(i, int(gguf.TokenType.UNUSED)))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    plain = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a", add_special_tokens=True).input_ids
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = len(full) > len(plain) and bos is not None and full[0] == bos
    add_eos = len(full) > len(plain) and eos is not None and full[-1] == eos and not (add_bos and len(full) == len(plain) + 1)
    return Vocabulary(tokens, token_types, merges, pre, bos, eos, tokenizer.pad_token_id, add_bos, add_eos)


# ---------------------------------------------------------------- tensors


def _tied(config: Any) -> bool:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(text_config, "tie_word_embeddings", False))


def gguf_tensors(model: Any, arch: str) -> Iterator[tuple[str, Callable[[], np.ndarray], tuple[int, ...]]]:
    """(GGUF name, a function giving the float32 array as llama.cpp wants it, its shape) for every weight."""
    import gguf

    config = model.config
    layers = int(getattr(config, "num_hidden_layers", None) or config.n_layer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], layers)
    heads = int(getattr(config, "num_attention_heads", None) or config.n_head)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    tied = _tied(config)
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith(SKIPPED_SUFFIXES) or (tied and hf_name == "lm_head.weight"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"GGUF export: no llama.cpp name for the {arch} weight {hf_name!r}")
        transform = _layout(arch, hf_name, heads, kv_heads)
        shape = tuple(tensor.shape[::-1]) if transform is _transposed else tuple(tensor.shape)
        yield name, (lambda t=tensor, f=transform: f(t.detach().float().cpu().numpy())), shape


CONV1D_WEIGHTS = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")  # GPT-2 keeps these as [in, out]


def _transposed(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.T)


def _layout(arch: str, hf_name: str, heads: int, kv_heads: int) -> Callable[[np.ndarray], np.ndarray]:
    """How one weight is reordered for llama.cpp (see the module's docstring)."""
    if arch == "llama" and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
        return lambda array: permute_for_rope(array, heads)
    if arch == "llama" and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
        return lambda array: permute_for_rope(array, kv_heads)
    if arch == "gpt2" and hf_name.endswith(CONV1D_WEIGHTS):
        return _transposed
    return lambda array: array


def stored_type(shape: tuple[int, ...], gguf_type: str) -> Any:
    """The GGML type a tensor of `shape` is written in for the chosen file type."""
    from gguf import GGMLQuantizationType as T

    if len(shape) < 2 or gguf_type == "f32":
        return T.F32
    if gguf_type == "q8_0" and shape[-1] % Q8_0_BLOCK == 0:
        return T.Q8_0
    return T.F16


def _encoded(array: np.ndarray, kind: Any) -> np.ndarray:
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    if kind == T.F32:
        return array.astype(np.float32, copy=False)
    if kind == T.F16:
        return array.astype(np.float16)
    return quants.quantize(array.astype(np.float32, copy=False), kind)


# ---------------------------------------------------------------- the file


def write_gguf(path: Path, model: Any, tokenizer: Any, name: str, context_length: int | None, gguf_type: str,
               description: str = "", on_progress: ProgressCallback | None = None) -> GGUFSummary:
    """Write `model` (a transformers causal LM, LoRA already merged) and its tokenizer as one GGUF file."""
    import gguf

    config = model.config
    arch = gguf_architecture(config, type(model).__name__)
    vocab_size = int(config.vocab_size)
    vocabulary = gguf_vocabulary(tokenizer, vocab_size)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    if description:
        writer.add_description(description)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[gguf_type]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    context = _add_hyperparameters(writer, config, arch, context_length)
    _add_vocabulary(writer, vocabulary)

    tensors = list(gguf_tensors(model, arch))
    types: dict[str, int] = {}
    for gguf_name, _, shape in tensors:
        kind = stored_type(shape, gguf_type)
        types[kind.name] = types.get(kind.name, 0) + 1
        if kind == gguf.GGMLQuantizationType.Q8_0:
            byte_shape = gguf.quant_shape_to_byte_shape(shape, kind)
            writer.add_tensor_info(gguf_name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)), raw_dtype=kind)
        else:
            dtype = np.dtype(np.float32 if kind == gguf.GGMLQuantizationType.F32 else np.float16)
            writer.add_tensor_info(gguf_name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for done, (_, array_of, shape) in enumerate(tensors, start=1):
        writer.write_tensor_data(_encoded(array_of(), stored_type(shape, gguf_type)))
        if on_progress:
            on_progress(done, len(tensors))
    writer.close()
    return GGUFSummary(path, arch, len(tensors), types, context, vocabulary.pre)


def _add_hyperparameters(writer: Any, config: Any, arch: str, context_length: int | None) -> int:
    """The architecture's keys; returns the context length written."""
    if arch == "gpt2":
        # Its learned position table has n_positions rows: the context cannot differ from it.
        context = int(config.n_positions)
        writer.add_context_length(context)
        writer.add_embedding_length(int(config.n_embd))
        writer.add_feed_forward_length(int(config.n_inner or 4 * config.n_embd))
        writer.add_block_count(int(config.n_layer))
        writer.add_head_count(int(config.n_head))
        writer.add_layer_norm_eps(float(config.layer_norm_epsilon))
        return context
    context = int(context_length or config.max_position_embeddings)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    theta, scaling, factor = _rope_settings(config)
    writer.add_context_length(context)
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or heads))
    writer.add_rope_freq_base(theta)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_rope_dimension_count(head_dim)
    if head_dim * heads != int(config.hidden_size):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if scaling == "linear" and factor:
        import gguf

        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))
    return context


def _add_vocabulary(writer: Any, vocabulary: Vocabulary) -> None:
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(vocabulary.pre)
    writer.add_token_list(vocabulary.tokens)
    writer.add_token_types(vocabulary.types)
    writer.add_token_merges(vocabulary.merges)
    for add, value in ((writer.add_bos_token_id, vocabulary.bos_id), (writer.add_eos_token_id, vocabulary.eos_id),
                       (writer.add_pad_token_id, vocabulary.pad_id)):
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(vocabulary.add_bos)
    writer.add_add_eos_token(vocabulary.add_eos)
