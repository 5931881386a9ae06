"""The strongest check of the GGUF export: llama.cpp itself (llama-cpp-python) reads the file.

It must split Russian into exactly the tokens the HF tokenizer gives, and continue a prompt
greedily (f32 weights, f32 KV cache) with exactly transformers' tokens, for the built-in
Llama (the q/k permutation), a Qwen2 (biases, its own pre-tokenizer) and a GPT-2 (Conv1D,
learned positions). Skipped where llama-cpp-python is not installed: it compiles llama.cpp
(`CMAKE_ARGS=-DGGML_NATIVE=OFF pip install llama-cpp-python`, many minutes), so CI, which
installs only the project's own dependencies, does not run it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from exporting import RUSSIAN_TEXTS, greedy, prose, save_tiny_llama, save_tiny_qwen2
from training_fixtures import save_tiny_gpt2

from dvoinik.export.gguf_file import write_gguf

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it compiles llama.cpp)")
pytestmark = pytest.mark.slow

GGML_TYPE_F32 = 0
NEW_TOKENS = 64
PROMPT = "В то утро она вышла из дома и"


def load_hf(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def open_gguf(path: Path, context: int):
    return llama_cpp.Llama(model_path=str(path), n_ctx=context, n_threads=2, type_k=GGML_TYPE_F32,
                           type_v=GGML_TYPE_F32, verbose=False)


def llama_greedy(llm, ids: list[int], count: int) -> list[int]:
    out = []
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(int(token))
        if len(out) == count:
            break
    return out


def check_same(gguf: Path, model, tokenizer, context: int, texts: list[str]) -> None:
    llm = open_gguf(gguf, context)
    for text in texts:
        expected = tokenizer(text, add_special_tokens=False).input_ids
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == expected, text
    prompt = tokenizer(PROMPT, add_special_tokens=False).input_ids
    expected, margins = greedy(model, prompt, NEW_TOKENS)
    actual = llama_greedy(llm, prompt, NEW_TOKENS)
    first = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), None)
    assert first is None, f"diverges at token {first} (transformers' top-2 margin there {margins[first]:.2e})"


def test_builtin_model_in_llama_cpp(served_ws, tmp_path: Path) -> None:
    model, tokenizer = load_hf(served_ws.runs_dir / "served" / "checkpoint-24")
    write_gguf(tmp_path / "m.gguf", model, tokenizer, "micro", 128, "f32")
    check_same(tmp_path / "m.gguf", model, tokenizer, 128, RUSSIAN_TEXTS)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_tiny_families_in_llama_cpp(family: str, tmp_path: Path) -> None:
    save = {"llama": save_tiny_llama, "qwen2": save_tiny_qwen2, "gpt2": lambda f: save_tiny_gpt2(f, prose(), positions=128)}[family]
    model, tokenizer = load_hf(save(tmp_path / family))
    write_gguf(tmp_path / "m.gguf", model, tokenizer, family, None, "f32")
    check_same(tmp_path / "m.gguf", model, tokenizer, 128, RUSSIAN_TEXTS)


def test_real_russian_prose_tokenizes_alike(shared_corpus: Path, tmp_path: Path) -> None:
    """dvoinik's BPE trained on the shared classics (8000 tokens), on 300 of their paragraphs and the varied texts."""
    from transformers import AutoTokenizer

    from dvoinik.corpus.readers import read_file
    from dvoinik.tokens import train_bpe_tokenizer

    paragraphs = []
    for path in sorted((shared_corpus / "ru-classics").glob("*/*.txt*"))[::6]:
        for raw in read_file(path).texts:
            paragraphs += [p for p in raw.text.split("\n\n") if p.strip()]
    assert len(paragraphs) > 1000
    tokenizer = train_bpe_tokenizer(lambda: iter(paragraphs), 8000)
    folder = tmp_path / "real"
    tokenizer.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64, tie_word_embeddings=True)
    torch.manual_seed(0)
    write_gguf(tmp_path / "m.gguf", LlamaForCausalLM(config), tokenizer, "real", 64, "f16")
    llm = open_gguf(tmp_path / "m.gguf", 64)
    sample = paragraphs[:: max(1, len(paragraphs) // 300)][:300] + RUSSIAN_TEXTS
    differ = [t for t in sample if llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)
              != tokenizer(t, add_special_tokens=False).input_ids]
    assert differ == [], f"{len(differ)} of {len(sample)} texts split differently, e.g. {differ[0][:80]!r}"
