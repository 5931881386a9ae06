"""The base models writers fine-tune, each as a tiny local folder built here, through every stage.

Llama (SentencePiece-style tokenizer, BOS added), Qwen2 (byte-level BPE, tied embeddings),
GPT-2 in ruGPT-3's shape, GPT-NeoX (partial rotary, parallel residual; a tokenizer that names
no EOS), Mistral (sliding window shorter than the block) and Gemma (scaled tied embeddings,
a BOS it cannot do without): full fine-tune, resume, LoRA, generation with the guard (and
the static-cache path against `generate`), evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from training_fixtures import make_workspace

from dvoinik.corpus.build import load_documents
from dvoinik.evaluation.evaluate import evaluate_run
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import load_double
from dvoinik.generation.variants import generate, prompt_ids, sample_ids
from dvoinik.runs import find_run, run_token_set
from dvoinik.tokens import added_prefix, train_bpe_tokenizer
from dvoinik.training.loop import train
from dvoinik.training.metrics import read_metrics
from dvoinik.workspace import EvaluateSettings, write_settings

GUARD = 4
RUN = {"block_size": 16, "batch_size": 2, "eval_blocks": 2, "eval_every": 100, "log_every": 1, "learning_rate": 1e-2}


# ---------------------------------------------------------------- tokenizers of every kind


def byte_level(texts: list[str], eos: bool = True) -> Any:
    """GPT-2 / Qwen2 style: byte-level BPE, EOS <|endoftext|>, nothing added; `eos=False` names no EOS at all."""
    tokenizer = train_bpe_tokenizer(lambda: iter(texts), 400)
    if not eos:
        from transformers import PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)  # no special tokens named
    return tokenizer


def sentencepiece(texts: list[str], kind: str) -> Any:
    """Llama / Mistral / Gemma style: Metaspace (▁) BPE with byte fallback and a BOS added to every text."""
    from tokenizers import SentencePieceBPETokenizer
    from transformers import GemmaTokenizer, LlamaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>"] if kind == "gemma" else ["<unk>", "<s>", "</s>"]
    trained = SentencePieceBPETokenizer()
    trained.train_from_iterator(texts, vocab_size=400, special_tokens=specials, show_progress=False)
    vocab = trained.get_vocab()
    merges = [tuple(pair) for pair in json.loads(trained.to_str())["model"]["merges"]]
    cls = GemmaTokenizer if kind == "gemma" else LlamaTokenizer
    return cls(vocab=vocab, merges=merges, add_bos_token=True)


# ---------------------------------------------------------------- tiny models of real shapes


def configs(tokenizer: Any) -> dict[str, Callable[[], Any]]:
    from transformers import (
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
    )

    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    ids = {"vocab_size": len(tokenizer), "eos_token_id": eos, "bos_token_id": tokenizer.bos_token_id or eos,
           "pad_token_id": tokenizer.pad_token_id}
    llama = {**ids, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 160}
    return {
        "llama": lambda: LlamaConfig(**llama, tie_word_embeddings=False),
        "qwen2": lambda: Qwen2Config(**llama, tie_word_embeddings=True),
        "gpt2": lambda: GPT2Config(**ids, n_embd=32, n_layer=2, n_head=4, n_positions=160),  # ruGPT-3's architecture
        "gpt_neox": lambda: GPTNeoXConfig(**ids, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                                          num_attention_heads=4, rotary_pct=0.25, use_parallel_residual=True,
                                          max_position_embeddings=160, tie_word_embeddings=False),
        "mistral": lambda: MistralConfig(**llama, sliding_window=8),  # shorter than the block: the window matters
        "gemma": lambda: GemmaConfig(**llama, head_dim=8, hidden_activation="gelu_pytorch_tanh"),
    }


TOKENIZERS = {"llama": "llama", "qwen2": "byte-level", "gpt2": "byte-level", "gpt_neox": "no-eos",
              "mistral": "llama", "gemma": "gemma"}


def save_base(folder: Path, arch: str, texts: list[str]) -> Path:
    from transformers import AutoModelForCausalLM

    kind = TOKENIZERS[arch]
    tokenizer = sentencepiece(texts, kind) if kind in ("llama", "gemma") else byte_level(texts, eos=kind != "no-eos")
    config = configs(tokenizer)[arch]()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """One workspace (corpus built once) that every architecture trains its runs in, side by side."""
    ws = make_workspace(tmp_path_factory.mktemp("architectures"))
    return write_settings(ws, "train", RUN)


EVALUATE = EvaluateSettings(prompts=2, prompt_tokens=4, sample_tokens=8, extraction_prompts=1)


@pytest.mark.parametrize("arch", list(TOKENIZERS))
def test_fine_tune_resume_lora_generate_guard_and_evaluate(workspace, tmp_path: Path, arch: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import dvoinik.evaluation.report

    # The report's plots do not depend on the architecture (tests/test_evaluation_report.py draws them) and
    # take most of an evaluation's time here: report.json is written, the HTML and PNGs are not.
    monkeypatch.setattr(dvoinik.evaluation.report, "write_report_files", lambda report, folder: None)
    ws = workspace
    texts = [d.text for d in load_documents(ws.corpus_dir)]
    base = save_base(tmp_path / arch, arch, texts)
    base_weights = load_file(base / "model.safetensors")

    # Full fine-tune, stopped and resumed.
    full = train(ws, run=f"{arch}-full", overrides={"base": str(base), "method": "full", "max_steps": 2,
                                                      "save_every": 2})
    resumed = train(ws, run=f"{arch}-full", overrides={"max_steps": 4}, resume=True)
    assert (full.steps, resumed.steps) == (2, 4) and resumed.val_target_ppl is not None
    losses = [r["loss"] for r in read_metrics(resumed.run_dir) if r["kind"] == "train"]
    assert len(losses) == 4 and all(np.isfinite(losses))
    tuned = load_file(resumed.run_dir / "checkpoint-4" / "model.safetensors")
    changed = [k for k in tuned if k in base_weights and not torch.equal(tuned[k].float(), base_weights[k].float())]
    assert changed and all(tuned[k].dtype == torch.float32 for k in tuned)  # trained in fp32

    # The token files open every document with the BOS a SentencePiece-style base expects.
    token_set = run_token_set(ws, find_run(ws, f"{arch}-full"))
    tokenizer = load_double(ws, f"{arch}-full", "last").tokenizer
    prefix = added_prefix(tokenizer)
    assert bool(prefix) == (TOKENIZERS[arch] in ("llama", "gemma"))
    first = token_set.open("train", token_set.target)
    assert list(first[: len(prefix)]) == prefix and token_set.eos_id == tokenizer.eos_token_id is not None

    # LoRA with PEFT's targets for the architecture; the base folder is never written.
    lora = train(ws, run=f"{arch}-lora", overrides={"base": str(base), "method": "lora", "max_steps": 2,
                                                      "save_every": 2, "lora_rank": 4})
    adapter = load_file(lora.run_dir / "checkpoint-2" / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    assert all(torch.equal(v, load_file(base / "model.safetensors")[k]) for k, v in base_weights.items())

    # Generation: streamed, guarded, the continuation's text exactly what follows the prompt's.
    double = load_double(ws, f"{arch}-full", "last")
    prompt = " ".join(texts[0].split()[:6])
    pieces: dict[int, str] = {}
    result = generate(double, prompt, decoding_for("nucleus", max_new_tokens=12, seed=1), n=2, guard=GUARD,
                      on_text=lambda row, text: pieces.__setitem__(row, pieces.get(row, "") + text))
    ids = prompt_ids(double, prompt, 12)[0].tolist()
    assert ids[: len(prefix)] == prefix
    for row, variant in enumerate(result.variants):
        assert pieces.get(row, "") == variant.text
        assert double.tokenizer.decode(ids + list(variant.ids), skip_special_tokens=True) == prompt + variant.text
        window = ids + list(variant.ids)
        grams = [window[i : i + GUARD] for i in range(len(ids) - GUARD + 1, len(window) - GUARD + 1)]
        assert not any(double.index.contains(g) for g in grams)

    # The static-cache path writes what generate writes (greedy, with the guard).
    greedy = decoding_for("greedy", max_new_tokens=10)
    batch = torch.tensor([ids])
    assert sample_ids(double, batch, greedy, GUARD, n=2, fast=True) == sample_ids(double, batch, greedy, GUARD, n=2,
                                                                                  fast=False)

    # Evaluation of the LoRA run: perplexity, samples, copying, extraction, style.
    report = evaluate_run(ws, f"{arch}-lora", settings=EVALUATE).report
    [measured] = report["checkpoints"]
    assert measured["name"] == "checkpoint-2" and np.isfinite(measured["val_target_ppl"])
    assert measured["samples"]["longest_span"] and measured["extraction"]["prompts"] == 1
