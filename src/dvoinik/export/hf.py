"""A clean Hugging Face folder: weights (merged, or the LoRA adapter), config, tokenizer and generation defaults.

What a checkpoint holds beyond a model (`resume/`: optimizer state, generators) stays
behind. The config is made right for anyone who loads the folder:

- `use_cache: true` (training switches the KV cache off; generation wants it on);
- `max_position_embeddings` = the block the built-in model was trained on (it has never
  seen a later position, and its loss climbs past it);
- the keys transformers 4.x reads beside the 5.x ones: `torch_dtype` (beside `dtype`),
  `rope_theta` at the top level and `rope_scaling` (beside `rope_parameters`), and a
  `tokenizer_class` 4.x knows (`PreTrainedTokenizerFast` for dvoinik's own tokenizer,
  which 5.x names `TokenizersBackend`);
- `generation_config.json` holds the chosen preset's sampling settings, so
  `model.generate(...)`, vLLM and TGI decode as `dvoinik generate` would.

Every file is written world-readable (0644 less nothing: a model folder is for sharing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from dvoinik.generation.decoding import Decoding

FILE_MODE = 0o644
CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
LOADING_KEYS = ("is_local", "local_files_only")  # how the checkpoint was loaded here, not part of the tokenizer
TOKENIZER_CLASS_4X = {"TokenizersBackend": "PreTrainedTokenizerFast"}  # 5.x's generic fast class → 4.x's


def config_for_export(config: dict, context_length: int | None) -> dict:
    """config.json as exported: KV cache on, the trained context, and the keys transformers 4.x reads too."""
    out = dict(config)
    out["use_cache"] = True
    if context_length is not None and "max_position_embeddings" in out:  # RoPE models: no weight depends on it
        out["max_position_embeddings"] = context_length
    if "dtype" in out and "torch_dtype" not in out:
        out["torch_dtype"] = out["dtype"]
    rope = out.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        out.setdefault("rope_theta", rope["rope_theta"])
        scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
        if scaling.get("rope_type", "default") != "default":
            out.setdefault("rope_scaling", scaling)
    return out


def generation_config_values(decoding: Decoding, eos_id: int | None, bos_id: int | None, pad_id: int | None) -> dict:
    """generation_config.json's values for a decoding preset (transformers' names; 0 and 1 mean off as there)."""
    values: dict[str, Any] = {"do_sample": decoding.do_sample, "num_beams": decoding.num_beams,
                              "max_new_tokens": decoding.max_new_tokens}
    if decoding.do_sample:
        values.update(temperature=decoding.temperature, top_k=decoding.top_k, top_p=decoding.top_p)
        if decoding.typical_p < 1.0:
            values["typical_p"] = decoding.typical_p
        if decoding.min_p > 0.0:
            values["min_p"] = decoding.min_p
    if decoding.repetition_penalty != 1.0:
        values["repetition_penalty"] = decoding.repetition_penalty
    if decoding.no_repeat_ngram_size:
        values["no_repeat_ngram_size"] = decoding.no_repeat_ngram_size
    for key, value in (("eos_token_id", eos_id), ("bos_token_id", bos_id), ("pad_token_id", pad_id)):
        if value is not None:
            values[key] = value
    return values


def write_model_folder(model: Any, tokenizer: Any, folder: Path, decoding: Decoding,
                       context_length: int | None) -> list[Path]:
    """Save a full model (weights, config, tokenizer, generation defaults) into `folder`; return the files."""
    model.config.use_cache = True
    model.save_pretrained(folder)  # safetensors, weights only
    _rewrite_json(folder / CONFIG, lambda config: config_for_export(config, context_length))
    return _finish(folder, tokenizer, decoding, context_length)


def write_adapter_folder(checkpoint: Path, tokenizer: Any, folder: Path, decoding: Decoding, base_hub_id: str,
                         context_length: int | None) -> list[Path]:
    """The LoRA adapter as PEFT saved it, its base named by hub id (not a path on the training machine)."""
    shutil.copyfile(checkpoint / ADAPTER_WEIGHTS, folder / ADAPTER_WEIGHTS)
    config = json.loads((checkpoint / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_hub_id
    config["inference_mode"] = True
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return _finish(folder, tokenizer, decoding, context_length)


def _finish(folder: Path, tokenizer: Any, decoding: Decoding, context_length: int | None) -> list[Path]:
    from transformers import GenerationConfig

    tokenizer.save_pretrained(folder)

    def tokenizer_config(config: dict) -> dict:
        config["tokenizer_class"] = TOKENIZER_CLASS_4X.get(config.get("tokenizer_class"), config.get("tokenizer_class"))
        for key in LOADING_KEYS:
            config.pop(key, None)
        if context_length is not None:
            config["model_max_length"] = context_length
        return config

    _rewrite_json(folder / TOKENIZER_CONFIG, tokenizer_config)
    values = generation_config_values(decoding, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id)
    GenerationConfig(**values).save_pretrained(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        path.chmod(FILE_MODE)
    return files


def _rewrite_json(path: Path, change: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(data), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
