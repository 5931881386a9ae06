"""A tiny model that has memorised a short text, and the copy and word indexes of that text (built in the test)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from synthetic import synthetic_prose

from dvoinik.generation.copyindex import SourceWork, write_copy_index
from dvoinik.generation.double import Double
from dvoinik.generation.wordindex import write_word_index
from dvoinik.tokens import train_bpe_tokenizer


def memorised_text() -> str:
    return synthetic_prose(42, 2)


def memorising_double(folder: Path, steps: int = 300) -> tuple[Double, list[int]]:
    """A 2-layer Llama trained until it reproduces `memorised_text()`; its tokens, copy index and word index."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    text = memorised_text()
    tokenizer = train_bpe_tokenizer(lambda: iter([text]), 300)
    ids = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.tensor([ids])
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    index = write_copy_index(np.asarray(ids, dtype=np.uint16), [SourceWork("w1", "Автор", "Заученное", 0, len(ids))],
                             folder / "copy-index", "test")
    words = write_word_index([SimpleNamespace(id="w1", author="Автор", title="Заученное", text=text)],
                             folder / "word-index", "test")
    return Double(model, tokenizer, "memorised", index, 512, words=words), ids
