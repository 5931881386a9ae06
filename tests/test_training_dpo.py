"""DPO on the writer's picks: synthetic picks that prefer the target's text move a small double towards the target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from demo_fixtures import PLAIN_RUN, TARGET, demo_workspace, short_style_model
from typer.testing import CliRunner

from dvoinik.cli import app
from dvoinik.evaluation.voices import attribution_shares
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import load_checkpoint
from dvoinik.generation.variants import generate
from dvoinik.preferences import PreferencePair
from dvoinik.runs import find_run, resolve_checkpoint, run_token_set
from dvoinik.training.dpo import dpo_loss, split_held_out, synthetic_pairs, train_dpo
from dvoinik.training.loop import TrainingError, train

PROMPTS = ["Утром", "Он сказал", "В тот день", "Потом", "Она"]
DPO = {"learning_rate": 1e-3, "max_steps": 20, "save_every": 10, "batch_size": 8, "beta": 0.1}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A micro model trained on both authors at equal weight, without voices: it writes a mix of the two."""
    ws = demo_workspace(tmp_path_factory.mktemp("dpo"), PLAIN_RUN)
    train(ws, run="plain")
    return ws


@pytest.fixture(scope="module")
def pairs(plain):
    from transformers import AutoTokenizer

    run = find_run(plain, "plain")
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(run, "last"))
    return synthetic_pairs(run_token_set(plain, run), tokenizer, 48, prompt_tokens=16, answer_tokens=40, seed=1)


def target_share(ws, folder: Path) -> float:
    double = load_checkpoint(folder, trained_length=64)
    texts = [v.text for i, prompt in enumerate(PROMPTS)
             for v in generate(double, prompt, decoding_for("nucleus", max_new_tokens=48, seed=i), n=4).variants]
    return attribution_shares(short_style_model(ws), texts).get(TARGET, 0.0)


def test_dpo_raises_preference_accuracy_and_moves_the_double_towards_the_target(plain, pairs) -> None:
    before = target_share(plain, resolve_checkpoint(find_run(plain, "plain"), "last"))
    result = train_dpo(plain, run="picked", source="plain", pairs=pairs, overrides=DPO)
    assert result.steps == 20 and [p.name for p in result.checkpoints] == ["checkpoint-10", "checkpoint-20"]
    assert result.accuracy_after >= 0.8 and result.accuracy_after > result.accuracy_before
    assert result.reward_accuracy_after >= 0.8
    after = target_share(plain, result.checkpoints[-1])
    assert after > before and after >= 0.8, (before, after)

    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["method"] == "dpo" and record["from"] == {"run": "plain", "checkpoint": "checkpoint-60"}
    assert record["dpo"]["beta"] == 0.1 and record["dpo"]["method"] == "full"
    assert record["reference"].startswith("plain/checkpoint-60")
    assert record["pairs"]["total"] == 48 and record["pairs"]["train"] + record["pairs"]["held_out"] == 48
    assert record["preference_accuracy"]["before"] == result.accuracy_before
    assert record["preference_accuracy"]["after"] == result.accuracy_after
    assert record["settings"]["block_size"] == 64  # later stages read the model's settings from it
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if m["kind"] == "dpo_eval"] == [0, 10, 20]


def test_a_resumed_dpo_run_continues_from_its_last_checkpoint(plain, pairs) -> None:
    first = train_dpo(plain, run="resumed", source="plain", pairs=pairs, overrides={**DPO, "max_steps": 10})
    assert first.steps == 10
    again = train_dpo(plain, run="resumed", pairs=pairs, overrides={"max_steps": 20}, resume=True)
    assert again.steps == 20 and again.checkpoints[-1].name == "checkpoint-20"
    record = json.loads((again.run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["resumes"][0]["from"] == "checkpoint-10" and record["dpo"]["learning_rate"] == 1e-3
    with pytest.raises(TrainingError, match="the pairs changed"):
        train_dpo(plain, run="resumed", pairs=pairs[:-1], resume=True)
    with pytest.raises(TrainingError, match="already exists"):
        train_dpo(plain, run="resumed", source="plain", pairs=pairs)


def test_the_cli_trains_on_a_preferences_file_and_names_a_bad_line(plain, pairs, tmp_path: Path) -> None:
    good = tmp_path / "preferences.jsonl"
    good.write_text("".join(json.dumps(p.to_json(), ensure_ascii=False) + "\n" for p in pairs[:24]), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["-w", str(plain.root), "train", "--method", "dpo", "--preferences", str(good),
                                 "--from", "plain", "--run", "cli", "--max-steps", "2", "--set", "learning_rate=1e-4"])
    assert result.exit_code == 0, result.output
    assert "held-out preference accuracy" in result.output and (plain.runs_dir / "cli" / "checkpoint-2").is_dir()

    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text(encoding="utf-8").splitlines()[0] + "\n{\"prompt\": 1}\n", encoding="utf-8")
    result = runner.invoke(app, ["-w", str(plain.root), "train", "--method", "dpo", "--preferences", str(bad),
                                 "--run", "bad"])
    assert result.exit_code == 2 and f"{bad}:2: a pair needs the strings prompt, chosen and rejected" in result.output
    result = runner.invoke(app, ["-w", str(plain.root), "train", "--method", "dpo", "--run", "neither"])
    assert result.exit_code == 2 and "--from-picks" in result.output
    result = runner.invoke(app, ["-w", str(plain.root), "train", "--method", "dpo", "--from-picks", "--run", "none"])
    assert result.exit_code == 2 and "no studio database yet" in result.output
    assert not (plain.runs_dir / "bad").exists() and not (plain.runs_dir / "none").exists()


def test_held_out_pairs_keep_whole_generations_together() -> None:
    pairs = [PreferencePair(f"p{i // 3}", "c", f"r{i}", generation_id=f"g{i // 3}") for i in range(300)]
    train_part, held = split_held_out(pairs, 0.2, seed=1)
    assert 0.1 < len(held) / 300 < 0.3
    assert not {p.generation_id for p in train_part} & {p.generation_id for p in held}
    assert split_held_out(pairs, 0.2, seed=1) == (train_part, held)


def test_the_loss_is_dpos() -> None:
    import math

    import torch

    loss, margin = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    assert margin.item() == pytest.approx(1.0)  # 0.5 * ((-1 + 2) - (-3 + 2))
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))


def test_dpo_on_a_lora_run_trains_its_adapter_and_leaves_the_base_alone(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from training_fixtures import make_workspace, save_tiny_gpt2
    from transformers import AutoTokenizer

    from dvoinik.corpus.build import load_documents

    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    before = load_file(base / "model.safetensors")
    train(ws, run="lora", overrides={"base": str(base), "method": "lora", "max_steps": 2, "save_every": 2,
                                     "lora_rank": 4})
    run = find_run(ws, "lora")
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint(run, "last"))
    # Pairs longer than the base's 64 positions are cut to fit them.
    pairs = synthetic_pairs(run_token_set(ws, run), tokenizer, 12, prompt_tokens=40, answer_tokens=30, seed=2)
    result = train_dpo(ws, run="lora-dpo", source="lora", pairs=pairs,
                       overrides={"max_steps": 3, "save_every": 3, "batch_size": 4, "held_out": 0.3})
    last = result.checkpoints[-1]
    assert (last / "adapter_model.safetensors").is_file() and not (last / "model.safetensors").exists()
    record = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["dpo"]["method"] == "lora" and record["dpo"]["learning_rate"] == 5e-5
    assert result.accuracy_before is not None and result.accuracy_after is not None
    after = load_file(base / "model.safetensors")
    assert all(torch_equal(before[k], after[k]) for k in before)  # the base folder is never written


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
