"""The memory plan: exact weight counts from configs alone, activations checked against what autograd keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_fixtures import make_workspace
from typer.testing import CliRunner

from dvoinik.cli import app
from dvoinik.training.plan import (
    GIB,
    Hardware,
    PlanError,
    Setup,
    layer_activation_bytes,
    memory_plan,
    model_figures,
    parse_size,
    plan_lines,
    plan_run,
)
from dvoinik.workspace import TrainSettings

LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192, tie_word_embeddings=False)
RUGPT3_XL = dict(vocab_size=50264, n_embd=2048, n_layer=24, n_head=16, n_positions=2048)  # 1.3B, GPT-2 shape


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """config.json only, as `hf download --include config.json` would leave: the plan needs no weights."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    root = tmp_path_factory.mktemp("configs")
    made = {
        "llama-8b": LlamaConfig(**LLAMA_8B),
        "rugpt3-xl": GPT2Config(**RUGPT3_XL),
        "tiny-llama": LlamaConfig(vocab_size=500, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2),
        "tiny-neox": GPTNeoXConfig(vocab_size=500, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, rotary_pct=0.25),
        "tiny-gpt2": GPT2Config(vocab_size=500, n_embd=64, n_layer=2, n_head=4, attn_pdrop=0.0, bos_token_id=0,
                                eos_token_id=0),
    }
    for name, config in made.items():
        config.save_pretrained(root / name)
    return {name: root / name for name in made}


def saved_bytes(model: torch.nn.Module, tokens: int, vocab: int) -> int:
    """Bytes of the distinct tensors autograd keeps for a training step under bf16 autocast (weights' casts too)."""
    import torch.nn.functional as F

    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    ids = torch.randint(0, vocab, (1, tokens + 1), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=ids[:, :-1]).logits
        F.cross_entropy(logits.reshape(-1, vocab).float(), ids[:, 1:].reshape(-1))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(size for pointer, size in storages.items() if pointer not in weights)


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-neox", "tiny-gpt2"])
def test_activations_per_token_match_what_autograd_keeps(configs: dict[str, Path], name: str) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = TrainSettings(base=str(configs[name]), method="full")
    figures = model_figures(str(configs[name]), settings)
    config = AutoConfig.from_pretrained(configs[name], attn_implementation="sdpa")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).train()
    # Per token: the difference of two lengths leaves out what does not grow with them (the weights' casts).
    measured = (saved_bytes(model, 96, figures.vocab) - saved_bytes(model, 32, figures.vocab)) / 64
    outside = 4 * figures.hidden + 8 * figures.hidden + 2 * figures.hidden
    planned = figures.layers * layer_activation_bytes(figures, half=True) + outside + 4 * figures.vocab
    assert planned == pytest.approx(measured, rel=0.15), (planned, measured)


def test_plans_of_an_8b_lora_and_a_1_3b_full_fine_tune(configs: dict[str, Path]) -> None:
    lora = TrainSettings(base=str(configs["llama-8b"]), method="lora", batch_size=8, block_size=1024)
    card_24, card_80 = Hardware(1, 24 * GIB, "GPU"), Hardware(1, 80 * GIB, "GPU")
    plan = plan_run(lora, card_24)
    assert plan.figures.parameters == 8_030_261_248 and plan.plan.trainable == 6_815_744  # q_proj, v_proj; r 16
    assert plan.plan.weights == pytest.approx(2 * 8_030_261_248 + 4 * 6_815_744, rel=1e-6)  # bf16 base, fp32 adapter
    assert not plan.fits and plan.suggestions
    assert all(s.plan.total <= card_24.memory for s in plan.suggestions)
    assert "gradient_checkpointing=true" in plan.suggestions[0].change
    text = "\n".join(plan_lines(plan))
    assert "does NOT fit on 1 × GPU (24.0 GiB each)" in text and "what fits instead" in text

    full = TrainSettings(base=str(configs["rugpt3-xl"]), method="full", batch_size=8, block_size=1024,
                         gradient_checkpointing=True)
    on_80 = plan_run(full, card_80)
    assert on_80.figures.parameters == 1_315_737_600 and on_80.fits and on_80.largest_batch >= 8
    n = on_80.figures.parameters
    assert (on_80.plan.gradients, on_80.plan.optimizer) == (4 * n, 8 * n)  # fp32 gradients, AdamW's two moments
    on_24 = plan_run(full, card_24)
    assert not on_24.fits
    changes = [s.change for s in on_24.suggestions]
    assert any("--method lora" in c for c in changes) and any("FSDP2 over 2 GPUs" in c for c in changes)

    setup = Setup.of(full, gpu=True)
    sharded = memory_plan(on_80.figures, Setup.of(full, gpu=True, shards=4))
    assert sharded.optimizer == on_80.plan.optimizer // 4 and sharded.activations == on_80.plan.activations
    assert memory_plan(on_80.figures, setup).activations < memory_plan(
        on_80.figures, Setup.of(TrainSettings(**{**full.__dict__, "gradient_checkpointing": False}), gpu=True)).activations


def test_sizes_are_read_as_gpu_makers_write_them() -> None:
    assert parse_size("24GB") == parse_size("24 GiB") == parse_size("24") == 24 * GIB
    assert parse_size("16000MB") == 16000 * 1024**2
    with pytest.raises(PlanError, match="expected a size such as 24GB"):
        parse_size("lots")


def test_train_plan_from_the_command_line_trains_nothing(tmp_path: Path, configs: dict[str, Path]) -> None:
    ws = make_workspace(tmp_path)
    runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200"})
    result = runner.invoke(app, ["-w", str(ws.root), "train", "--plan", "--base", str(configs["llama-8b"]),
                                 "--method", "lora", "--set", "block_size=1024", "--gpu-memory", "24GB"])
    assert result.exit_code == 0, result.output
    assert "8,030,261,248" in result.stdout and "does NOT fit" in result.stdout and "--set gradient_checkpointing=true" in result.stdout
    built_in = runner.invoke(app, ["-w", str(ws.root), "train", "--plan"])  # the workspace's own micro model
    assert built_in.exit_code == 0 and "micro" not in built_in.stderr
    assert ("no CUDA GPU is visible" in built_in.stdout) is not torch.cuda.is_available()
    assert not ws.runs_dir.exists() and not ws.tokens_dir.exists()
    bad = runner.invoke(app, ["-w", str(ws.root), "train", "--plan", "--gpu-memory", "lots"])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("error: --gpu-memory 'lots'")
