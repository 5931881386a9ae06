"""Decoding settings: presets, validation, seeds, and the logits processors in the order they must run.

The processors are assembled here rather than left to `model.generate`, because the
originality guard has to ban tokens *before* temperature, top-k, top-p, typical and min-p
filtering: banned after them, it could empty a nucleus. The processors themselves are
transformers' own, in transformers' own order, with the guard between the penalties and
the samplers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dvoinik.workspace import PRESETS


class GenerationError(Exception):
    """A user-facing problem with generation settings or checkpoints (one line)."""


@dataclass(frozen=True)
class Decoding:
    """Every decoding setting. `do_sample` False means greedy (num_beams 1) or beam search."""

    preset: str = "coherent"
    do_sample: bool = True
    temperature: float = 0.7
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    typical_p: float = 1.0  # 1 = off
    min_p: float = 0.0  # 0 = off
    repetition_penalty: float = 1.0  # 1 = off
    no_repeat_ngram_size: int = 0  # 0 = off
    num_beams: int = 1
    max_new_tokens: int = 200
    stop: tuple[str, ...] = ()
    seed: int = 0


PRESET_VALUES: dict[str, dict[str, Any]] = {
    # Readable prose from small models: a cool temperature, a nucleus, and a penalty on loops.
    "coherent": {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 0.95, "repetition_penalty": 1.15},
    # The story's setting: plain nucleus sampling over the whole vocabulary.
    "nucleus": {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 0.9},
    "greedy": {"do_sample": False, "num_beams": 1},
    "beam": {"do_sample": False, "num_beams": 4, "no_repeat_ngram_size": 3},
}
assert set(PRESET_VALUES) == set(PRESETS)

_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (lambda v: v > 0, "above 0"),
    "top_k": (lambda v: v >= 0, "0 (off) or more"),
    "top_p": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "typical_p": (lambda v: 0 < v <= 1, "above 0 and at most 1"),
    "min_p": (lambda v: 0 <= v < 1, "at least 0 and below 1"),
    "repetition_penalty": (lambda v: v > 0, "above 0"),
    "no_repeat_ngram_size": (lambda v: v >= 0, "0 (off) or more"),
    "num_beams": (lambda v: 1 <= v <= 64, "between 1 and 64"),
    "max_new_tokens": (lambda v: 1 <= v <= 100_000, "between 1 and 100000"),
}


def decoding_for(preset: str, **settings: Any) -> Decoding:
    """The preset's values with `settings` (those not None) on top, validated."""
    # "do_sample" is not a user-facing key: it follows from the preset (and beams).
    if preset not in PRESET_VALUES:
        raise GenerationError(f"unknown preset {preset!r} (presets: {', '.join(PRESET_VALUES)})")
    given = {k: v for k, v in settings.items() if v is not None}
    values = {**PRESET_VALUES[preset], **given}
    if values.get("num_beams", 1) > 1 and "do_sample" not in given:
        values["do_sample"] = False  # --num-beams means beam search, whatever the preset samples
    for key, value in values.items():
        check = _CHECKS.get(key)
        if check and not check[0](value):
            raise GenerationError(f"{key} = {value!r}: must be {check[1]}")
    if "stop" in values:
        values["stop"] = tuple(s for s in values["stop"] if s)
    return Decoding(preset=preset, **values)


def random_seed() -> int:
    return random.SystemRandom().randrange(1 << 31)


def with_seed(decoding: Decoding, seed: int | None) -> Decoding:
    return replace(decoding, seed=random_seed() if seed is None else seed)


def logits_processors(decoding: Decoding, guard: Any | None) -> Any:
    """Penalties, then the guard, then the sampling filters: transformers' processors in transformers' order."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        NoRepeatNGramLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
        TypicalLogitsWarper,
    )

    processors = LogitsProcessorList()
    if decoding.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(decoding.repetition_penalty))
    if decoding.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(decoding.no_repeat_ngram_size))
    if guard is not None:
        processors.append(guard)
    if decoding.do_sample:
        keep = 2 if decoding.num_beams > 1 else 1
        if decoding.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(decoding.temperature))
        if decoding.top_k > 0:
            processors.append(TopKLogitsWarper(decoding.top_k, min_tokens_to_keep=keep))
        if decoding.top_p < 1.0:
            processors.append(TopPLogitsWarper(decoding.top_p, min_tokens_to_keep=keep))
        if decoding.min_p > 0.0:
            processors.append(MinPLogitsWarper(decoding.min_p, min_tokens_to_keep=keep))
        if decoding.typical_p < 1.0:
            processors.append(TypicalLogitsWarper(decoding.typical_p, min_tokens_to_keep=keep))
    return processors
