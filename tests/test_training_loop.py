from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_fixtures import make_workspace, patterned_prose, save_tiny_gpt2

from dvoinik.corpus.build import load_documents
from dvoinik.training.checkpoints import list_checkpoints
from dvoinik.training.loop import TrainingError, TrainObserver, train
from dvoinik.training.metrics import read_metrics


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def weights(folder: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(folder / name)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_from_scratch_trains_and_writes_loadable_checkpoints(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws = make_workspace(tmp_path)
    result = train(ws, run="scratch", overrides={"max_steps": 24, "save_every": 8, "eval_every": 8})
    assert result.steps == 24 and result.stop_reason == "max_steps"
    assert [c.step for c in list_checkpoints(result.run_dir)] == [8, 16, 24]
    losses = train_losses(result.run_dir)
    assert len(losses) == 12 and losses[-1] < losses[0] - 1.0  # from ~ln(400) down
    evals = [r for r in read_metrics(result.run_dir) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [8, 16, 24]
    assert evals[-1]["val_target_ppl"] < evals[0]["val_target_ppl"] and "val_influences_ppl" in evals[-1]
    record = read_metrics(result.run_dir)[0]
    assert set(record) >= {"loss", "ppl", "lr", "tokens_per_second", "tokens", "epoch", "elapsed_s"}

    last = result.run_dir / "checkpoint-24"
    model, tokenizer = AutoModelForCausalLM.from_pretrained(last), AutoTokenizer.from_pretrained(last)
    ids = tokenizer(load_documents(ws.corpus_dir)[0].text[:40], return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=5, do_sample=False).shape[1] == ids.shape[1] + 5
    run = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["settings"]["base"] == "micro" and run["parameters"]["trainable"] == run["parameters"]["total"]


class InterruptAfterSave(TrainObserver):
    """Stops a run (as Ctrl-C would) right after its first checkpoint."""

    def saved(self, path: Path) -> None:
        raise KeyboardInterrupt


def test_resume_follows_the_same_trajectory(tmp_path: Path) -> None:
    straight_ws = make_workspace(tmp_path / "a")
    straight = train(straight_ws, run="r", overrides={"max_steps": 8})
    resumed_ws = make_workspace(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        train(resumed_ws, run="r", overrides={"max_steps": 8}, observer=InterruptAfterSave())
    assert [c.step for c in list_checkpoints(resumed_ws.runs_dir / "r")] == [4]
    resumed = train(resumed_ws, run="r", resume=True)
    assert resumed.steps == 8
    assert_same_weights(weights(straight.run_dir / "checkpoint-8"), weights(resumed.run_dir / "checkpoint-8"))
    assert train_losses(straight.run_dir) == pytest.approx(train_losses(resumed.run_dir), rel=1e-6)
    run = json.loads((resumed.run_dir / "run.json").read_text(encoding="utf-8"))
    assert [r["from"] for r in run["resumes"]] == ["checkpoint-4"]


def test_full_fine_tune_of_a_local_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "tiny-gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    result = train(ws, run="ft", overrides={"base": str(base), "method": "full", "max_steps": 16, "save_every": 8})
    losses = train_losses(result.run_dir)
    assert losses[-1] < losses[0] - 0.5
    tuned = AutoModelForCausalLM.from_pretrained(result.run_dir / "checkpoint-16")
    assert tuned.config.model_type == "gpt2"
    before = weights(base)
    after = weights(result.run_dir / "checkpoint-16")
    assert not torch.equal(before["transformer.h.0.attn.c_attn.weight"], after["transformer.h.0.attn.c_attn.weight"])


def test_lora_trains_an_adapter_and_leaves_the_base_alone(tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "tiny-gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    before = weights(base)
    overrides = {"base": str(base), "method": "lora", "max_steps": 16, "save_every": 8, "learning_rate": 1e-2,
                 "lora_rank": 4}
    result = train(ws, run="lora", overrides=overrides)
    assert result.stop_reason == "max_steps"
    losses = train_losses(result.run_dir)
    assert losses[-1] < losses[0]
    last = result.run_dir / "checkpoint-16"
    assert (last / "adapter_config.json").is_file() and (last / "adapter_model.safetensors").is_file()
    assert not (last / "model.safetensors").exists()
    adapter = weights(last, "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), last)
    assert model.peft_config["default"].r == 4
    assert_same_weights(before, weights(base))  # the base folder is never written

    # resume a LoRA run: the adapter and its optimizer state come back
    resumed = train(ws, run="lora", overrides={"max_steps": 24}, resume=True)
    assert resumed.steps == 24 and (resumed.run_dir / "checkpoint-24" / "adapter_model.safetensors").is_file()


def test_stops_by_target_perplexity_time_budget_and_epochs(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    by_ppl = train(ws, run="ppl", overrides={"max_steps": 50, "target_train_ppl": 1e9})
    assert by_ppl.stop_reason == "target_ppl" and by_ppl.steps == 2  # the first logging window
    assert [c.step for c in list_checkpoints(by_ppl.run_dir)] == [2]  # saved where it stopped
    by_time = train(ws, run="time", overrides={"max_steps": 50, "time_budget_minutes": 1e-6})
    assert by_time.stop_reason == "time_budget" and by_time.steps == 1
    by_epochs = train(ws, run="epochs", overrides={"epochs": 0.01, "max_steps": 10_000})
    meta = json.loads(next(ws.tokens_dir.glob("*/meta.json")).read_text(encoding="utf-8"))
    train_tokens = sum(a["train_tokens"] for a in meta["authors"])
    assert by_epochs.stop_reason == "epochs" and by_epochs.steps == -(-train_tokens // 100 // (4 * 32))


def test_keep_last_and_leftovers_of_a_killed_save(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    result = train(ws, run="k", overrides={"max_steps": 12, "keep_last": 1})
    assert [c.step for c in list_checkpoints(result.run_dir)] == [12]
    half = result.run_dir / ".checkpoint-16.tmp"  # what a kill during a save leaves
    (half / "resume").mkdir(parents=True)
    (half / "config.json").write_text("{}", encoding="utf-8")
    assert [c.step for c in list_checkpoints(result.run_dir)] == [12]
    train(ws, run="k", overrides={"max_steps": 16}, resume=True)
    assert not half.exists() and [c.step for c in list_checkpoints(result.run_dir)] == [16]


def test_user_mistakes_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = make_workspace(tmp_path)
    train(ws, run="once", overrides={"max_steps": 2})
    with pytest.raises(TrainingError, match="already exists: pass --resume"):
        train(ws, run="once")
    with pytest.raises(TrainingError, match="no such run to resume .*once"):
        train(ws, run="never", resume=True)
    with pytest.raises(TrainingError, match="--method lora adapts a pretrained model"):
        train(ws, run="x", overrides={"method": "lora"})
    with pytest.raises(TrainingError, match="block_size 9999 is longer than the model's context"):
        base = save_tiny_gpt2(tmp_path / "g", ["текст"] * 20)
        train(ws, run="long", overrides={"base": str(base), "block_size": 9999})
    with pytest.raises(TrainingError, match="run name .* plain folder name"):
        train(ws, run="../escape")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    with pytest.raises(Exception, match="cannot be fetched from the Hugging Face hub here"):
        train(ws, run="hub", overrides={"base": "no-such-org/no-such-model"})


def run_cli(ws_root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "dvoinik", "-w", str(ws_root), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("method", ["scratch", "full", "lora"])
def test_resume_after_kill_9(tmp_path: Path, method: str) -> None:
    """A run killed with SIGKILL resumes from its last complete checkpoint and ends where a straight run ends."""
    steps = ["--max-steps", "40", "--save-every", "3", "--run", "k9"]
    overrides = {"max_steps": 40, "save_every": 3}
    weights_file = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    if method != "scratch":
        base = save_tiny_gpt2(tmp_path / "gpt2", [patterned_prose(i, 20) for i in range(5)])
        steps += ["--base", str(base), "--method", method]
        overrides.update(base=str(base), method=method)
    ws = make_workspace(tmp_path / "killed")
    process = run_cli(ws.root, "train", *steps)
    run_dir = ws.runs_dir / "k9"
    deadline = time.monotonic() + 120
    while not list_checkpoints(run_dir) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = [c.step for c in list_checkpoints(run_dir)]
    assert done_before and done_before[-1] < 40, "the run ended before it could be killed"

    resumed = run_cli(ws.root, "train", *steps, "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resumed from checkpoint-" in output

    straight = train(make_workspace(tmp_path / "straight"), run="k9", overrides=overrides)
    assert_same_weights(weights(straight.run_dir / "checkpoint-40", weights_file), weights(run_dir / "checkpoint-40", weights_file))
    steps_logged = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps_logged == sorted(set(steps_logged)) == list(range(2, 41, 2))  # no line twice after the resume
    losses = train_losses(run_dir)
    assert losses[-1] < losses[0]


def test_out_of_memory_is_a_clear_message_and_leaves_complete_checkpoints(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import dvoinik.training.loop as loop

    ws = make_workspace(tmp_path)
    calls = {"n": 0}
    real = loop.next_token_loss

    def running_out(model, ids):
        calls["n"] += 1
        if calls["n"] > 5 and model.training:  # step 6, after checkpoint-4
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, ids)

    monkeypatch.setattr(loop, "next_token_loss", running_out)
    with pytest.raises(TrainingError) as caught:
        train(ws, run="oom", overrides={"max_steps": 8})
    message = str(caught.value)
    assert "out of GPU memory at step 5" in message and "lower train.batch_size" in message
    assert "checkpoint-4" in message and "--resume" in message
    assert [c.step for c in list_checkpoints(ws.runs_dir / "oom")] == [4]


def test_gradient_checkpointing_and_accumulation_train(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    base = save_tiny_gpt2(tmp_path / "gpt2", [d.text for d in load_documents(ws.corpus_dir)])
    for method in ("full", "lora"):
        result = train(ws, run=f"gc-{method}", overrides={
            "base": str(base), "method": method, "gradient_checkpointing": True, "grad_accum": 2, "max_steps": 4,
            "learning_rate": 1e-2})
        records = [r for r in read_metrics(result.run_dir) if r["kind"] == "train"]
        assert records[0]["tokens"] == 2 * 2 * 4 * 32  # grad_accum × batch × block per step
        assert all(math.isfinite(r["loss"]) for r in records) and result.steps == 4
        assert list_checkpoints(result.run_dir)[-1].step == 4
