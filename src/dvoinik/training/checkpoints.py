"""Checkpoints: Hugging Face folders that `from_pretrained` loads as they are, plus what exact resume needs.

    runs/<run>/checkpoint-<step>/
      config.json, model.safetensors      (full training; gathered from the shards under FSDP2 / ZeRO-3,
                                          tied weights once)   or   adapter_config.json,
      adapter_model.safetensors (LoRA), generation_config.json, tokenizer files
      resume/state.pt                     optimizer, scheduler, grad scaler, step counters
      resume/rng-<rank>.pt                torch and CUDA generators and the data sampler, per process
      resume/accelerate/                  FSDP2 / DeepSpeed: the sharded weights and optimizer (Accelerate's save_state)

A checkpoint is written as `.checkpoint-<step>.tmp` and renamed when every file is on
disk, so a folder named `checkpoint-<step>` is complete when written; leftovers of a killed
save (or of one that found the disk full) are removed. A checkpoint damaged later (a
delete stopped half-way, a file cut short) is passed over by `--resume`, which goes back to
the newest whole one (`resumable_checkpoint`). Older checkpoints are removed (by
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
from dvoinik.faults import disk_full, is_disk_full
from dvoinik.training.distributed import full_state_dict, save_model_folder

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
RESUME_DIR = "resume"
STATE_FILE = "state.pt"
ACCELERATE_STATE_DIR = "accelerate"  # FSDP / DeepSpeed: their sharded states, saved by Accelerate
# What a full disk's message suggests freeing.
FREE_CHECKPOINT_SPACE = "older checkpoints of this and other runs, or set [train] keep_last; then " \
    "`dvoinik train --resume` continues from the last complete checkpoint"


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


def damaged_weights(folder: Path) -> str | None:
    """Why the weights in `folder` cannot be loaded (a file missing, cut short, not safetensors), or None.

    Reads only each safetensors header and compares the sizes it promises with the file's:
    a truncated file is found in a moment, without loading a tensor.
    """
    weights = sorted(folder.glob("*.safetensors"))
    if not weights and not any((folder / name).is_file() for name in ("pytorch_model.bin", "adapter_model.bin")):
        return "no weights (model.safetensors) in it"
    if (folder / "model.safetensors.index.json").is_file() or not weights:
        return None  # sharded or older formats: their loader says what is wrong
    for path in weights:
        problem = _safetensors_problem(path)
        if problem:
            return f"{path.name} {problem}"
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        return "config.json is missing"
    return None


def _safetensors_problem(path: Path) -> str | None:
    import json
    import struct

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > size - 8:
                return f"is cut short, or not safetensors at all ({size} bytes)"
            header = json.loads(handle.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError):
        return "is not a safetensors file (damaged)"
    if 8 + header_len + end != size:
        return f"is cut short ({size} of {8 + header_len + end} bytes)"
    return None


def resume_problem(checkpoint: Path) -> str | None:
    """Why training cannot resume from `checkpoint` (a file a half-finished delete took, damaged weights), or None."""
    resume = checkpoint / RESUME_DIR
    if not (resume / STATE_FILE).is_file():
        return f"{RESUME_DIR}/{STATE_FILE} is missing"
    if not any(resume.glob("rng-*.pt")):
        return f"{RESUME_DIR}/rng-*.pt is missing"
    return damaged_weights(checkpoint)


def resumable_checkpoint(run_dir: Path) -> tuple[Checkpoint | None, list[str]]:
    """The newest checkpoint training can resume from, and a note for each newer one it passed over."""
    notes = []
    for checkpoint in reversed(list_checkpoints(run_dir)):
        problem = resume_problem(checkpoint.path)
        if problem is None:
            return checkpoint, notes
        notes.append(f"{checkpoint.path.name} is incomplete ({problem}); passed over")
    return None, notes


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

    try:
        state_dict = full_state_dict(accelerator, model)  # gathered from the shards under FSDP2 / ZeRO-3
        save_model_folder(accelerator.unwrap_model(model, keep_torch_compile=False), state_dict, staging,
                          accelerator.is_main_process, accelerator.save)
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
    except BaseException as exc:
        if accelerator.is_main_process:  # a half-written checkpoint holds the space the disk lacks
            shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(exc, run_dir):
            raise disk_full(final, FREE_CHECKPOINT_SPACE) from exc
        raise
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        readable_files(staging)
        fsync_files(staging)
        if final.exists():  # a step saved twice (resumed right after a save): the new one wins
            shutil.rmtree(final)
        os.replace(staging, final)
    accelerator.wait_for_everyone()
    return final


def readable_files(folder: Path) -> None:
    """Give every file a new file's mode (0666 less the umask): transformers writes model.safetensors 0600."""
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


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
