"""How a run is spread over processes: the engine `accelerate launch` asked for, checked, set up and named.

    accelerate launch (environment) ──► check_launch: refuse what would be silently ignored
                │                          (FSDP or DeepSpeed without a CUDA GPU, FSDP version 1, Megatron-LM)
                ▼
           Accelerator ──► configure_deepspeed: the micro-batch, accumulation and clipping of [train],
                │            set before `prepare` (DeepSpeed cannot read them from a DataLoader we do not have)
                ▼
           describe(accelerator) ──► Engine: what run.json records and the start line prints

Saving a sharded model as one Hugging Face folder: `full_state_dict` gathers the weights
onto the main process (FSDP2 through torch.distributed.checkpoint, DeepSpeed ZeRO-3
through its 16-bit consolidation), and `save_model_folder` writes them with
`save_pretrained`, each tied weight once. The FSDP2 half is plain torch, so it is tested
on CPUs with torch's own `fully_shard` over gloo, where Accelerate does not go.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What `accelerate launch` exports for each engine of its config file.
ENGINE_VARIABLES = {
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}


class DistributedError(Exception):
    """A launch that dvoinik will not run as asked (one line)."""


@dataclass(frozen=True)
class Engine:
    """How the run's processes share the work: recorded in run.json and printed at the start."""

    distributed_type: str  # Accelerate's DistributedType: NO, MULTI_CPU, MULTI_GPU, FSDP, DEEPSPEED
    processes: int
    name: str  # "single process", "DDP (gloo)", "DDP (nccl)", "FSDP2", "DeepSpeed ZeRO-3"
    details: str = ""  # "full shard", "optimizer offloaded to cpu", ...

    @property
    def sharded(self) -> bool:
        return self.distributed_type in ("FSDP", "DEEPSPEED")

    def label(self) -> str:
        return f"{self.name} ({self.details})" if self.details else self.name


def requested_engine(env: Mapping[str, str]) -> str | None:
    """The sharding engine a launcher asked for through the environment, if any."""
    for variable, name in ENGINE_VARIABLES.items():
        if env.get(variable, "false").strip().lower() in ("true", "1", "yes"):
            return name
    return None


def check_launch(env: Mapping[str, str], cuda: bool) -> None:
    """Refuse a launch whose engine would be ignored or break: one line saying what to do instead."""
    engine = requested_engine(env)
    if engine is None:
        return
    if engine == "Megatron-LM":
        raise DistributedError("the Accelerate config asks for Megatron-LM, which dvoinik does not support; "
                               "use FSDP2 or DeepSpeed ZeRO (see docs/training.md)")
    if not cuda:
        raise DistributedError(
            f"the Accelerate config asks for {engine}, which shards over CUDA GPUs, and this machine has none: "
            f"it would train as plain DDP over gloo without a word; launch without the {engine} config "
            "(`accelerate launch --multi_gpu --num_processes N -m dvoinik train`) or on GPUs"
        )
    if engine == "FSDP" and env.get("FSDP_VERSION", "1").strip() != "2":
        raise DistributedError(
            f"the Accelerate config asks for FSDP version {env.get('FSDP_VERSION', '1')}; dvoinik runs FSDP2 "
            "(torch's fully_shard): set `fsdp_version: 2` under fsdp_config (examples/accelerate/fsdp2.yaml)"
        )


def _fill(config: dict, key: str, ours: Any, setting: str) -> None:
    """Put our value where the DeepSpeed config says "auto" or nothing; refuse a different number."""
    given = config.get(key, "auto")
    if given == "auto":
        config[key] = ours
    elif given != ours:
        raise DistributedError(f"the DeepSpeed config sets {key} = {given}, but {setting} is {ours}; "
                               f'set it to "auto" (dvoinik fills it in) or change {setting}')


def configure_deepspeed(accelerator: Any, batch_size: int, grad_accum: int, grad_clip: float) -> None:
    """Fill the DeepSpeed config from [train] before `prepare`: micro-batch, accumulation, clipping, ZeRO-3 saving.

    Accelerate reads the micro-batch from a DataLoader passed to `prepare`; our sampler is not
    one, so `train_micro_batch_size_per_gpu: auto` is resolved here. Our own AdamW and schedule
    are used, so a config with its own optimizer or scheduler is refused rather than half-obeyed.
    """
    plugin = accelerator.state.deepspeed_plugin
    config = plugin.deepspeed_config
    for section in ("optimizer", "scheduler"):
        if section in config:
            raise DistributedError(f"the DeepSpeed config has a {section!r} section; dvoinik trains with its own "
                                   "AdamW and learning-rate schedule ([train]): remove the section")
    _fill(config, "train_micro_batch_size_per_gpu", batch_size, "[train] batch_size")
    _fill(config, "gradient_accumulation_steps", grad_accum, "[train] grad_accum")
    _fill(config, "gradient_clipping", grad_clip, "[train] grad_clip")
    _fill(config, "train_batch_size", batch_size * grad_accum * accelerator.num_processes,
          "[train] batch_size × grad_accum × processes")
    zero = config.setdefault("zero_optimization", {})
    offload = zero.get("offload_optimizer")
    if isinstance(offload, dict) and offload.get("device") not in (None, "none"):
        raise DistributedError(f"the DeepSpeed config offloads the optimizer to {offload.get('device')}, which takes "
                               "DeepSpeed's own CPU Adam; dvoinik trains with torch's AdamW: set "
                               "offload_optimizer_device: none (weights may still be offloaded), or shard over more GPUs")
    if zero.get("stage") == 3:
        # A checkpoint is a whole Hugging Face folder: ZeRO-3 must gather its 16-bit weights to save one.
        zero["stage3_gather_16bit_weights_on_model_save"] = True


def describe(accelerator: Any) -> Engine:
    """The engine of a prepared-or-not Accelerator, in words."""
    kind = accelerator.distributed_type
    kind_name = getattr(kind, "value", str(kind))
    processes = accelerator.num_processes
    if kind_name == "DEEPSPEED":
        zero = accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {})
        offloaded = [f"{what} offloaded to {zero[key]['device']}" for key, what in
                     (("offload_optimizer", "optimizer"), ("offload_param", "weights"))
                     if isinstance(zero.get(key), dict) and zero[key].get("device") not in (None, "none")]
        return Engine(kind_name, processes, f"DeepSpeed ZeRO-{zero.get('stage', 0)}", ", ".join(offloaded))
    if kind_name == "FSDP":
        plugin = accelerator.state.fsdp_plugin
        details = ["full shard" if plugin.reshard_after_forward else "weights kept after forward (ZeRO-2-like)"]
        if type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy":  # FSDP2's "no offload" is a plain OffloadPolicy
            details.append("offloaded to cpu")
        return Engine(kind_name, processes, f"FSDP{plugin.fsdp_version}", ", ".join(details))
    if processes > 1:
        return Engine(kind_name, processes, "DDP (gloo)" if kind_name == "MULTI_CPU" else "DDP (nccl)")
    return Engine(kind_name, processes, "single process")


# ---------------------------------------------------------------- one Hugging Face folder from shards


def gathered_state_dict(module: Any) -> dict:
    """The full weights of a `fully_shard`-ed module, on CPU, on rank 0 (empty on the others).

    Every process must call it: the shards are all-gathered one tensor at a time.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_state_dict(accelerator: Any, model: Any) -> dict:
    """The prepared model's whole weights on the main process (every process calls it)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return gathered_state_dict(accelerator.unwrap_model(model, keep_torch_compile=False))
    return accelerator.get_state_dict(model)  # DeepSpeed ZeRO-3 consolidates; the others hold it whole


def without_tied_copies(model: Any, state_dict: dict) -> dict:
    """`state_dict` less each weight tied to another that is kept (lm_head ← embed_tokens).

    Gathered shards come back as separate tensors, so `save_pretrained` cannot see that they
    are one weight; the folder keeps the source once and `from_pretrained` ties the copy again.
    """
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    dropped = {copy for copy, source in tied.items() if copy in state_dict and source in state_dict}
    return {key: value for key, value in state_dict.items() if key not in dropped}


def save_model_folder(model: Any, state_dict: dict, folder: Path, is_main_process: bool,
                      save_function: Callable[..., Any] | None = None) -> None:
    """Write the gathered weights as a Hugging Face folder (a PEFT model writes its adapter only)."""
    kwargs: dict[str, Any] = {"save_function": save_function} if save_function is not None else {}
    if hasattr(model, "peft_config"):
        # A LoRA adapter of a run with voices keeps its marker rows as trainable tokens; the rest of the grown
        # embeddings is rebuilt when the base is loaded, so PEFT need not save the whole layer (its "auto").
        kwargs["save_embedding_layers"] = False
    model.save_pretrained(folder, is_main_process=is_main_process, state_dict=without_tied_copies(model, state_dict),
                          **kwargs)
