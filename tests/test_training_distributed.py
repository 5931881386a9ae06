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
from training_fixtures import make_workspace

from dvoinik.training.checkpoints import list_checkpoints
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
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["processes"] == 2
    assert done.stdout.count("Stopped at step 8") == 1 and "× 2 · precision" in done.stdout
    # 2 processes × batch 4 × block 32 per step
    assert records[0]["tokens"] == 2 * 2 * 4 * 32

    resumed = launch(ws.root, "--run", "ddp", "--max-steps", "12", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [c.step for c in list_checkpoints(run_dir)] == [4, 8, 12]
