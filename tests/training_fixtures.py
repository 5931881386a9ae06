"""Small workspaces and tiny models for the token and training tests (built in the test, never downloaded)."""

from __future__ import annotations

from pathlib import Path

from synthetic import synthetic_prose

from dvoinik.corpus.build import build_corpus
from dvoinik.workspace import Workspace, add_sources, init_workspace, write_settings

# A run that takes a second or two on a CPU: the micro model, short blocks, small batches.
MICRO = {
    "base": "micro", "vocab_size": 400, "block_size": 32, "batch_size": 4, "learning_rate": 3e-3,
    "warmup_fraction": 0.0, "log_every": 2, "eval_every": 4, "eval_blocks": 4, "save_every": 4, "max_steps": 8,
}


def patterned_prose(seed: int, paragraphs: int) -> str:
    """Prose a tiny model can learn quickly: a few sentences repeated in a seeded order."""
    import random

    rng = random.Random(seed)
    sentences = [synthetic_prose(seed * 100 + i, 1) for i in range(6)]
    return "\n\n".join(rng.choice(sentences) for _ in range(paragraphs))


def make_workspace(root: Path, train: dict | None = None) -> Workspace:
    """A workspace with a built corpus: a target author (4 works) and an influence (3 works)."""
    books = root / "books"
    for author, seed, works in (("target", 1, 4), ("influence", 7, 3)):
        folder = books / author
        folder.mkdir(parents=True, exist_ok=True)
        for w in range(works):
            (folder / f"work{w}.txt").write_text(patterned_prose(seed + w, 30), encoding="utf-8")
    ws = init_workspace(root / "double")
    ws, _ = add_sources(ws, [books / "target"], author="Цель", role="target")
    ws, _ = add_sources(ws, [books / "influence"], author="Влияние")
    ws = write_settings(ws, "corpus", {"workers": 1})
    ws = write_settings(ws, "train", {**MICRO, **(train or {})})
    build_corpus(ws)
    return ws


def save_tiny_gpt2(folder: Path, texts: list[str], positions: int = 64) -> Path:
    """A randomly initialised 2-layer GPT-2 with its own small BPE tokenizer, saved as a local HF folder."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from dvoinik.tokens import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(lambda: iter(texts), 400)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=positions, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
