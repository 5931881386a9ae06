"""Continuations from a checkpoint: load it (full model or LoRA adapter) and sample.

This is the small core the demo needs; presets, the originality guard, streaming and
the copy score build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvoinik.training.models import load_checkpoint_model


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 80
    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0


def load_for_generation(checkpoint: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a checkpoint folder."""
    from transformers import AutoTokenizer

    model = load_checkpoint_model(checkpoint)
    model.eval()
    return model, AutoTokenizer.from_pretrained(checkpoint)


def continue_prompt(model: Any, tokenizer: Any, prompt: str, n: int, sampling: Sampling) -> list[str]:
    """`n` sampled continuations of `prompt` in one batched call (the continuation only, cut at end of text)."""
    import torch

    torch.manual_seed(sampling.seed)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and ids.shape[1] + sampling.max_new_tokens > limit:
        ids = ids[:, -(limit - sampling.max_new_tokens):]
    with torch.no_grad():
        output = model.generate(
            ids.repeat(n, 1), attention_mask=torch.ones_like(ids).repeat(n, 1), do_sample=True,
            max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature, top_p=sampling.top_p,
            top_k=sampling.top_k, repetition_penalty=sampling.repetition_penalty,
            pad_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
    return [tokenizer.decode(row[ids.shape[1]:], skip_special_tokens=True) for row in output]
