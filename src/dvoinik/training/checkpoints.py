"""Checkpoints: Hugging Face folders that `from_pretrained` loads as they are, plus what exact resume needs.

    runs/<run>/checkpoint-<step>/
      config.json, model.safetensors      (full training)   or   adapter_config.json,
      adapter_model.safetensors (LoRA), generation_config.json, tokenizer files
      resume/state.pt                     optimizer, scheduler, grad scaler, step counters
      resume/rng-<rank>.pt                torch and CUDA generators and the data sampler, per process

A checkpoint is written as `.checkpoint-<step>.tmp` and renamed when every file is on
disk, so a folder named `checkpoint-<step>` is always complete; leftovers of a killed
save are removed when the run starts or resumes. Older checkpoints are removed (by
renaming them aside first) when a keep-last policy is set.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvoinik.atomic import fsync_files

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
RESUME_DIR = "resume"
STATE_FILE = "state.pt"
ACCELERATE_STATE_DIR = "accelerate"  # FSDP / DeepSpeed: their sharded states, saved by Accelerate


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"


def list_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints of a run, oldest first."""
    found = []
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            match = CHECKPOINT_PATTERN.match(child.name)
            if match and child.is_dir():
                found.append(Checkpoint(int(match.group(1)), child))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete what killed saves and prunes left behind (`.checkpoint-*.tmp`, `.checkpoint-*.del`)."""
    removed = []
    if run_dir.is_dir():
        for child in run_dir.iterdir():
            if child.name.startswith(".checkpoint-") and child.name.endswith((".tmp", ".del")):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def uses_accelerate_state(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def rng_state(sampler_state: dict) -> dict:
    import torch

    state = {"torch": torch.get_rng_state(), "sampler": sampler_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> dict:
    """Put the torch generators back; return the sampler's state for the caller to load."""
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    return state["sampler"]


def save_checkpoint(
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    optimizer: Any,
    scheduler: Any,
    trainer_state: dict,
    sampler_state: dict,
    run_dir: Path,
    step: int,
) -> Path:
    """Write checkpoint-<step> (every process calls this); return its path."""
    import torch

    final = run_dir / checkpoint_name(step)
    staging = run_dir / f".{final.name}.tmp"  # one name all processes agree on
    sharded = uses_accelerate_state(accelerator)
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        (staging / RESUME_DIR).mkdir(parents=True)
    accelerator.wait_for_everyone()

    state_dict = accelerator.get_state_dict(model)  # gathered from shards under FSDP / ZeRO-3
    unwrapped = accelerator.unwrap_model(model)
    # A LoRA adapter of a run with voices keeps its marker rows as trainable tokens; the rest of the grown
    # embeddings is rebuilt when the base is loaded, so PEFT need not save the whole layer (its "auto").
    adapter_only = {"save_embedding_layers": False} if hasattr(unwrapped, "peft_config") else {}
    unwrapped.save_pretrained(
        staging, is_main_process=accelerator.is_main_process, state_dict=state_dict, save_function=accelerator.save,
        **adapter_only,
    )
    if sharded:
        accelerator.save_state(staging / RESUME_DIR / ACCELERATE_STATE_DIR)
    if accelerator.is_main_process:
        tokenizer.save_pretrained(staging)
        state = {"trainer": trainer_state, "scheduler": scheduler.state_dict()}
        if not sharded:
            state["optimizer"] = optimizer.state_dict()
            if accelerator.scaler is not None:
                state["scaler"] = accelerator.scaler.state_dict()
        torch.save(state, staging / RESUME_DIR / STATE_FILE)
    torch.save(rng_state(sampler_state), staging / RESUME_DIR / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        fsync_files(staging)
        if final.exists():  # a step saved twice (resumed right after a save): the new one wins
            shutil.rmtree(final)
        os.replace(staging, final)
    accelerator.wait_for_everyone()
    return final


def load_resume_state(accelerator: Any, checkpoint: Path, optimizer: Any, scheduler: Any) -> tuple[dict, dict]:
    """Restore optimizer, scheduler, scaler and generators from `checkpoint`; return (trainer state, sampler state)."""
    import torch

    resume = checkpoint / RESUME_DIR
    state = torch.load(resume / STATE_FILE, map_location="cpu", weights_only=False)
    if uses_accelerate_state(accelerator):
        accelerator.load_state(resume / ACCELERATE_STATE_DIR)
    else:
        optimizer.load_state_dict(state["optimizer"])
        if accelerator.scaler is not None and "scaler" in state:
            accelerator.scaler.load_state_dict(state["scaler"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = resume / f"rng-{accelerator.process_index}.pt"
    if not rng_file.is_file():
        raise FileNotFoundError(
            f"{rng_file}: this checkpoint was written by fewer processes; resume with the same number of processes"
        )
    sampler_state = restore_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
    return state["trainer"], sampler_state


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Keep the newest `keep_last` checkpoints (0 keeps all); return the removed paths."""
    if keep_last <= 0:
        return []
    removed = []
    for checkpoint in list_checkpoints(run_dir)[:-keep_last]:
        aside = run_dir / f".{checkpoint.path.name}.del"  # renamed first: never a half-deleted checkpoint-N
        os.replace(checkpoint.path, aside)
        shutil.rmtree(aside, ignore_errors=True)
        removed.append(checkpoint.path)
    return removed
