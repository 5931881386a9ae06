"""The same `dvoinik train` under `accelerate launch` with 2 CPU processes (DDP over gloo)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_fixtures import make_workspace

from dvoinik.training.checkpoints import list_checkpoints
from dvoinik.training.distributed import DistributedError, check_launch, configure_deepspeed, describe
from dvoinik.training.metrics import read_metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(ws_root: Path, *args: str) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate command is not installed")
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
               "-m", "dvoinik", "-w", str(ws_root), "train", *args]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_train_and_write_one_set_of_checkpoints(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    done = launch(ws.root, "--run", "ddp", "--max-steps", "8", "--save-every", "4")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = ws.runs_dir / "ddp"
    assert [c.step for c in list_checkpoints(run_dir)] == [4, 8]
    assert sorted(p.name for p in (run_dir / "checkpoint-8" / "resume").iterdir()) == ["rng-0.pt", "rng-1.pt", "state.pt"]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]
    records = read_metrics(run_dir)
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6, 8]  # written once, by the main process
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses[-1] < losses[0]
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["processes"] == 2
    assert record["distributed"] == {"type": "MULTI_CPU", "processes": 2, "engine": "DDP (gloo)"}
    assert done.stdout.count("Stopped at step 8") == 1 and "× 2 · precision no · DDP (gloo)" in done.stdout
    # 2 processes × batch 4 × block 32 per step
    assert records[0]["tokens"] == 2 * 2 * 4 * 32

    resumed = launch(ws.root, "--run", "ddp", "--max-steps", "12", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [c.step for c in list_checkpoints(run_dir)] == [4, 8, 12]


# ---------------------------------------------------------------- FSDP2 and DeepSpeed on a machine without GPUs


def test_fully_shard_models_are_gathered_into_plain_folders_with_tied_weights_once(tmp_path: Path) -> None:
    """torch's own fully_shard over gloo (2 processes): dvoinik's gathering and saving give whole HF folders."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    worker = Path(__file__).with_name("fsdp_worker.py")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), str(worker), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    shards = json.loads((tmp_path / "shards.json").read_text(encoding="utf-8"))
    for name in ("llama-tied", "qwen2-untied", "gpt2"):
        assert shards[name]["local"][0] == shards[name]["full"][0] // 2  # really sharded, half per process
        with safe_open(str(tmp_path / name / "model.safetensors"), "pt") as saved:
            keys = set(saved.keys())
        tied = name != "qwen2-untied"
        assert ("lm_head.weight" in keys) is not tied  # a tied weight is written once
        model = AutoModelForCausalLM.from_pretrained(tmp_path / name)
        reference = torch.load(tmp_path / f"{name}.reference.pt")
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, reference[key], msg=f"{name}: {key}")  # the trained weights, whole
        assert (model.lm_head.weight is model.get_input_embeddings().weight) is tied
    adapter_dir = tmp_path / "llama-lora"
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as saved:
        adapter = {key: saved.get_tensor(key) for key in saved.keys()}
    reference = torch.load(adapter_dir.with_name("llama-lora.reference.pt"))
    assert adapter and all("lora_" in key for key in adapter)
    lora_b = [key for key in adapter if "lora_B" in key]
    assert any(adapter[key].abs().sum() > 0 for key in lora_b)  # trained away from LoRA's zero start
    for key, value in adapter.items():
        torch.testing.assert_close(value, reference[key.replace(".weight", ".default.weight")])


@pytest.mark.parametrize(("variables", "needles"), [
    ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, ["asks for FSDP, which shards over CUDA GPUs",
                                                           "plain DDP over gloo"]),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, ["asks for DeepSpeed"]),
    ({"ACCELERATE_USE_MEGATRON_LM": "true"}, ["Megatron-LM, which dvoinik does not support"]),
])
def test_a_sharding_launch_on_a_machine_without_gpus_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                variables: dict, needles: list[str]) -> None:
    """What `accelerate launch --config_file fsdp2.yaml` exports, on a CPU: one line, exit 2, nothing written."""
    from typer.testing import CliRunner

    from dvoinik.cli import app

    ws = make_workspace(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name, value in {**variables, "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "300"}).invoke(app, ["-w", str(ws.root), "train", "--run", "f"])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and all(needle in line for needle in needles), line
    assert not (ws.runs_dir / "f").exists() and not ws.tokens_dir.exists()


def test_fsdp_version_1_is_refused_also_on_gpus() -> None:
    check_launch({}, cuda=False)  # no engine asked for: nothing to refuse
    check_launch({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}, cuda=True)
    with pytest.raises(DistributedError, match="FSDP version 1; dvoinik runs FSDP2 .*fsdp_version: 2"):
        check_launch({"ACCELERATE_USE_FSDP": "true"}, cuda=True)  # Accelerate's default version is 1


class FakeAccelerator:
    """What configure_deepspeed and describe read of an Accelerator under DeepSpeed."""

    def __init__(self, config: dict, processes: int = 8) -> None:
        from accelerate.utils import DistributedType

        self.distributed_type = DistributedType.DEEPSPEED
        self.num_processes = processes
        plugin = type("Plugin", (), {"deepspeed_config": config})()
        self.state = type("State", (), {"deepspeed_plugin": plugin})()


def test_deepspeed_takes_its_micro_batch_accumulation_and_clipping_from_train_settings() -> None:
    # What Accelerate builds from an accelerate config's deepspeed_config (no JSON file): "auto" everywhere.
    config = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
              "gradient_clipping": "auto", "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "none"},
                                                                 "offload_param": {"device": "cpu"},
                                                                 "stage3_gather_16bit_weights_on_model_save": False}}
    accelerator = FakeAccelerator(config)
    configure_deepspeed(accelerator, batch_size=4, grad_accum=2, grad_clip=1.0)
    assert config["train_micro_batch_size_per_gpu"] == 4 and config["gradient_accumulation_steps"] == 2
    assert config["train_batch_size"] == 4 * 2 * 8 and config["gradient_clipping"] == 1.0
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True  # a whole HF folder
    engine = describe(accelerator)
    assert engine.name == "DeepSpeed ZeRO-3" and engine.sharded and engine.processes == 8
    assert engine.label() == "DeepSpeed ZeRO-3 (weights offloaded to cpu)"

    with pytest.raises(DistributedError, match=r"train_micro_batch_size_per_gpu = 16, but \[train\] batch_size is 4"):
        configure_deepspeed(FakeAccelerator({"train_micro_batch_size_per_gpu": 16}), 4, 1, 1.0)
    with pytest.raises(DistributedError, match="'optimizer' section; dvoinik trains with its own AdamW"):
        configure_deepspeed(FakeAccelerator({"optimizer": {"type": "AdamW"}}), 4, 1, 1.0)
    with pytest.raises(DistributedError, match="offloads the optimizer to cpu, which takes DeepSpeed's own CPU Adam"):
        configure_deepspeed(FakeAccelerator({"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}),
                            4, 1, 1.0)
