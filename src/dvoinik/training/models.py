"""The model to train: a built-in configuration from scratch, or a base model (hub id or folder), full or LoRA.

Built-in configurations use the Llama architecture from transformers (RoPE, RMSNorm,
SwiGLU, SDPA attention), so their checkpoints load with `AutoModelForCausalLM` anywhere
and every tool that reads Hugging Face folders reads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvoinik.workspace import TrainSettings


class ModelError(Exception):
    """A base model that cannot be loaded, or a base/method combination that does not fit (one line)."""


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    about: str


BUILTIN_MODELS: dict[str, ModelShape] = {
    "micro": ModelShape(64, 2, 2, 176, "about 0.1M weights besides embeddings; for smoke tests and CI, learns little"),
    "tiny": ModelShape(256, 4, 4, 704, "about 3M weights besides embeddings; trains in minutes on a laptop CPU"),
    "small": ModelShape(768, 12, 12, 2048, "about 85M besides embeddings (GPT-2 small class); one GPU"),
    "medium": ModelShape(1024, 24, 16, 2816, "about 300M besides embeddings (GPT-2 medium class); one large GPU"),
}


def is_builtin(base: str) -> bool:
    return base in BUILTIN_MODELS


def check_combination(base: str, method: str) -> None:
    if method not in ("full", "lora"):
        raise ModelError(f"unknown method {method!r}: expected full or lora")
    if is_builtin(base) and method == "lora":
        raise ModelError(
            f"--method lora adapts a pretrained model, but {base!r} is a built-in configuration trained from "
            "random weights; use --method full, or pass a pretrained --base (a hub id or a local folder)"
        )


def builtin_config(name: str, vocab_size: int, eos_id: int, block_size: int) -> Any:
    """The transformers LlamaConfig of a built-in configuration."""
    from transformers import LlamaConfig

    shape = BUILTIN_MODELS[name]
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=max(block_size, 2048),
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )


def new_model(name: str, vocab_size: int, eos_id: int, block_size: int, seed: int) -> Any:
    """A freshly initialised built-in model (the same weights for the same seed)."""
    import torch
    from transformers import LlamaForCausalLM

    config = builtin_config(name, vocab_size, eos_id, block_size)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _load_error(base: str, exc: Exception) -> ModelError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if Path(base).expanduser().exists():
        return ModelError(f"cannot load the model in {base}: {first}")
    names = ", ".join(BUILTIN_MODELS)
    return ModelError(
        f"cannot load base model {base!r}: it is not a local folder, and it cannot be fetched from the "
        f"Hugging Face hub here (offline, or no such model). Download it where there is a network "
        f"(`hf download {base} --local-dir DIR`) and pass --base DIR, or use a built-in configuration ({names})"
    )


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face hub answers at all: seconds, instead of a minute of download retries offline."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows; let the download try
    endpoint = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def from_folder_cache_or_hub(loader: Callable[..., Any], base: str, **kwargs: Any) -> Any:
    """`loader(base)` for a local folder; else from the local hub cache; else downloaded, if the hub answers.

    A local folder is passed as an absolute path, so an adapter's record of its base
    works from any folder.
    """
    local = Path(base).expanduser()
    try:
        if local.exists():
            return loader(str(local.resolve()), **kwargs)
        try:
            return loader(base, local_files_only=True, **kwargs)
        except OSError:
            pass  # not in the cache (or not all of it)
        if not hub_reachable():
            raise _load_error(base, OSError("the hub cannot be reached"))
        return loader(base, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(base, exc) from exc


def load_base_tokenizer(base: str) -> Any:
    """The base's tokenizer; one that names no end-of-text token gets the model's own (config.json), else its BOS
    or SEP, so that documents can be separated, and generation stopped, with a token the model knows."""
    from transformers import AutoTokenizer

    tokenizer = from_folder_cache_or_hub(AutoTokenizer.from_pretrained, base)
    if tokenizer.eos_token_id is None:
        separator = _document_separator(base, tokenizer)
        if separator is not None:
            tokenizer.eos_token = separator
    return tokenizer


def _document_separator(base: str, tokenizer: Any) -> str | None:
    from transformers import AutoConfig

    try:
        eos = getattr(from_folder_cache_or_hub(AutoConfig.from_pretrained, base), "eos_token_id", None)
    except ModelError:
        eos = None
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    for candidate in (eos, tokenizer.bos_token_id, tokenizer.sep_token_id):
        if isinstance(candidate, int) and 0 <= candidate < len(tokenizer):
            return tokenizer.convert_ids_to_tokens(candidate)
    return None


def load_base_model(base: str, dtype: Any = None) -> Any:
    """`AutoModelForCausalLM.from_pretrained(base)` with SDPA attention where the architecture has it."""
    from transformers import AutoModelForCausalLM

    def load(where: str, **kwargs: Any) -> Any:
        try:
            return AutoModelForCausalLM.from_pretrained(where, dtype=dtype, attn_implementation="sdpa", **kwargs)
        except ValueError as exc:
            if "sdpa" not in str(exc).lower():
                raise
            return AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)  # an architecture without SDPA

    return from_folder_cache_or_hub(load, base)


def lora_target_modules(model: Any, override: str) -> list[str]:
    """LoRA targets: the user's list, else PEFT's default for the architecture."""
    if override.strip():
        return [name.strip() for name in override.split(",") if name.strip()]
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(model.config, "model_type", "")
    if model_type not in DEFAULTS:
        raise ModelError(
            f"no default LoRA target modules for architecture {model_type!r}; name them in dvoinik.toml "
            "[train] lora_targets (e.g. \"q_proj,v_proj\") or with --set lora_targets=..."
        )
    return list(DEFAULTS[model_type])


def apply_lora(model: Any, settings: TrainSettings, trainable_tokens: list[int] | None = None) -> Any:
    """A PEFT LoRA adapter on `model`; `trainable_tokens`: embedding rows trained with it (voice markers)."""
    from peft import LoraConfig, get_peft_model

    targets = lora_target_modules(model, settings.lora_targets)
    config = LoraConfig(
        task_type="CAUSAL_LM", r=settings.lora_rank, lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout, target_modules=targets,
        trainable_token_indices=trainable_tokens or None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        first = (str(exc).strip().splitlines() or ["?"])[0]
        raise ModelError(f"LoRA targets {', '.join(targets)} do not fit this model: {first}") from exc


def is_adapter_folder(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


def adapter_base(folder: Path) -> str:
    """The base model (hub id or folder) a LoRA adapter folder was trained on."""
    return json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]


def load_checkpoint_model(folder: Path, trainable: bool = False, dtype: Any = None) -> Any:
    """A checkpoint folder as a model: a full model, or its base with the LoRA adapter on top."""
    from transformers import AutoModelForCausalLM

    from dvoinik.faults import damaged
    from dvoinik.training.checkpoints import damaged_weights

    problem = damaged_weights(folder)
    if problem is not None:  # one line naming the file, not safetensors' traceback
        raise damaged(folder, problem, "choose another with --checkpoint, or delete it and `dvoinik train --resume` "
                                       "writes it again from the one before")
    if is_adapter_folder(folder):
        from peft import PeftModel

        from dvoinik.voices import add_marker_rows

        base = load_base_model(adapter_base(folder), dtype)
        add_marker_rows(base, saved_vocab_size(folder))  # a run with voices: its markers' rows (PEFT fills them in)
        return PeftModel.from_pretrained(base, folder, is_trainable=trainable)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise _load_error(str(folder), exc) from exc


def saved_vocab_size(folder: Path) -> int:
    """How many tokens the tokenizer saved in a checkpoint folder has (0 when it has none)."""
    from transformers import AutoTokenizer

    try:
        return len(AutoTokenizer.from_pretrained(folder))
    except (OSError, ValueError):
        return 0


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts (of the whole model, also where ZeRO-3 has partitioned it at load)."""

    def size(p: Any) -> int:
        return getattr(p, "ds_numel", None) or p.numel()

    trainable = sum(size(p) for p in model.parameters() if p.requires_grad)
    total = sum(size(p) for p in model.parameters())
    return trainable, total
