"""Voices in training with a pretrained base: a full fine-tune grows its embeddings, LoRA trains the marker rows."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from training_fixtures import make_workspace, save_tiny_gpt2

from dvoinik.corpus.build import load_documents
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import load_checkpoint
from dvoinik.generation.variants import generate
from dvoinik.training.loop import train


def rows_ids(double) -> list[int]:
    return list(double.voices.values())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("voices-base")
    ws = make_workspace(root)
    base = save_tiny_gpt2(root / "tiny-gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    return ws, base


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_pretrained_base_learns_its_markers(workspace, method: str) -> None:
    ws, base = workspace
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(base))
    overrides = {"base": str(base), "method": method, "voices": True, "max_steps": 6, "save_every": 3,
                 "learning_rate": 1e-2, "lora_rank": 4}
    result = train(ws, run=f"voices-{method}", overrides=overrides)
    last = result.run_dir / "checkpoint-6"
    double = load_checkpoint(last)
    assert double.voices == {"Цель": vocab, "Влияние": vocab + 1}  # after the base's vocabulary
    rows = double.model.get_input_embeddings()(torch.tensor([[vocab, vocab + 1]]))[0]
    assert not torch.allclose(rows[0], rows[1])  # both started at the mean of the base's rows; training moved them
    if method == "lora":
        adapter = load_file(last / "adapter_model.safetensors")
        assert any("trainable_tokens" in key for key in adapter)  # the marker rows travel with the adapter
        assert not any("wte.weight" in key or "lm_head" in key for key in adapter)  # not the whole embedding layer
        assert not (last / "model.safetensors").exists()
    prompt = double.tokenizer("Ба ве", add_special_tokens=False).input_ids
    with torch.no_grad():
        after = [double.model(input_ids=torch.tensor([[marker, *prompt]])).logits[0, -1] for marker in rows_ids(double)]
    assert not torch.allclose(after[0], after[1])  # what follows depends on whose marker opens the text
    for name in double.voices:  # and generation in each voice works, never writing a marker
        ids = generate(double, "Ба ве", decoding_for("nucleus", max_new_tokens=6, seed=1), voice={name: 1.0}).variants[0].ids
        assert not set(ids) & set(double.voices.values())
    # A resumed run with voices continues from its checkpoint (the base grows the same way when loaded).
    resumed = train(ws, run=f"voices-{method}", overrides={"max_steps": 9}, resume=True)
    assert resumed.steps == 9 and load_checkpoint(resumed.run_dir / "checkpoint-9").voices == double.voices


def test_a_run_without_voices_is_as_before(workspace) -> None:
    ws, base = workspace
    result = train(ws, run="plain", overrides={"base": str(base), "method": "full", "max_steps": 2, "save_every": 2})
    assert load_checkpoint(result.run_dir / "checkpoint-2").voices == {}
    assert "voices" not in json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
