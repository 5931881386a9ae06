from __future__ import annotations

from pathlib import Path

from training_fixtures import make_workspace, save_tiny_gpt2

from dvoinik.corpus.build import load_documents
from dvoinik.generation import Sampling, continue_prompt, load_for_generation
from dvoinik.training.loop import train


def test_continuations_from_a_full_checkpoint_are_seeded(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    result = train(ws, run="g", overrides={"max_steps": 4})
    model, tokenizer = load_for_generation(result.checkpoints[-1])
    sampling = Sampling(max_new_tokens=12, seed=3)
    first = continue_prompt(model, tokenizer, "Бава", 3, sampling)
    assert len(first) == 3 and all(isinstance(t, str) and t for t in first)
    assert continue_prompt(model, tokenizer, "Бава", 3, sampling) == first
    assert continue_prompt(model, tokenizer, "Бава", 3, Sampling(max_new_tokens=12, seed=4)) != first


def test_continuations_from_a_lora_checkpoint(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    result = train(ws, run="l", overrides={"base": str(base), "method": "lora", "max_steps": 4})
    model, tokenizer = load_for_generation(result.checkpoints[-1])
    assert type(model).__name__.startswith("Peft")
    assert len(continue_prompt(model, tokenizer, "Бава", 2, Sampling(max_new_tokens=8))) == 2
