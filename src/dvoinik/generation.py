"""Continuations from the double: decoding presets, the originality guard, variants, streaming, style mixes.

    double = load_double(ws, run="demo", checkpoint="best")
    result = generate(double, "В то утро она вышла из дома и", decoding_for("coherent", seed=1), n=3, guard=10)

Decoding runs through `model.generate` of transformers. The logits processors are
assembled here rather than left to `generate`, because the originality guard has to ban
tokens *before* temperature, top-k, top-p, typical and min-p filtering: banned after
them, it could empty a nucleus. The processors themselves are transformers' own, in
transformers' own order, with the guard between the penalties and the samplers.

Every variant carries a copy score: the longest span of its text found in the training
texts (in tokens) and the work it comes from, from the token set's copy index.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from dvoinik.copyindex import CopyIndex, open_copy_index
from dvoinik.runs import AUTO, Run, find_run, resolve_checkpoint, run_token_set
from dvoinik.training.models import adapter_base, is_adapter_folder, load_base_model, load_checkpoint_model
from dvoinik.workspace import PRESETS, Workspace


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


# ---------------------------------------------------------------- the loaded double


@dataclass
class Double:
    """A model ready to write: its tokenizer, where it came from, and the copy index of its training texts."""

    model: Any
    tokenizer: Any
    checkpoint: str  # what the user would name: "demo/checkpoint-300", or the style mix
    index: CopyIndex | None = None
    context_length: int | None = None  # positions the model has at all
    trained_length: int | None = None  # positions it was trained on, when fewer (a built-in model's block size)
    styles: dict[str, str] = field(default_factory=dict)  # a style mix: run name → its adapter's name in the model
    mix: dict[str, float] = field(default_factory=dict)  # the weights of the mix now active

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_token_id


def load_checkpoint(folder: Path, index: CopyIndex | None = None, label: str | None = None,
                    trained_length: int | None = None) -> Double:
    """A Double from a checkpoint folder (full model or LoRA adapter)."""
    from transformers import AutoTokenizer

    model = _ready(load_checkpoint_model(folder))
    return Double(model, AutoTokenizer.from_pretrained(folder), label or folder.name, index, _context_length(model),
                  trained_length)


def load_double(
    ws: Workspace, run: str | None = None, checkpoint: str = AUTO, style: dict[str, float] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Double:
    """The run's checkpoint (by name, `best`, `last`; `auto` = best if evaluated, else last), or a style mix."""
    if style:
        if run is not None:
            raise GenerationError("--style names its runs itself; leave out --run")
        return load_style_mix(ws, style, checkpoint, on_progress)
    chosen = find_run(ws, run)
    folder = resolve_checkpoint(chosen, checkpoint)
    index = open_copy_index(run_token_set(ws, chosen), on_progress)
    return load_checkpoint(folder, index, f"{chosen.name}/{folder.name}", chosen.trained_length)


def parse_style(text: str) -> dict[str, float]:
    """`"A=0.7,B=0.3"` → `{"A": 0.7, "B": 0.3}`."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or weight != weight:
            raise GenerationError(f"--style {item!r}: expected RUN=WEIGHT, e.g. --style early=0.7,late=0.3")
        weights[name.strip()] = weight
    if len(weights) < 1:
        raise GenerationError("--style: name at least one run, e.g. --style early=0.7,late=0.3")
    return weights


def load_style_mix(
    ws: Workspace, weights: dict[str, float], checkpoint: str = AUTO, on_progress: Callable[[str], None] | None = None,
) -> Double:
    """LoRA runs that share one base, combined by weight into one adapter (PEFT `add_weighted_adapter`, "cat").

    "cat" stacks the adapters' ranks, so the mix is exactly the weighted sum of their weight updates.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    runs: list[tuple[Run, Path]] = []
    for name in weights:
        chosen = find_run(ws, name)
        folder = resolve_checkpoint(chosen, checkpoint)
        if not is_adapter_folder(folder):
            raise GenerationError(f"{folder}: --style mixes LoRA adapters, and this run trained every weight "
                                  "(train the styles with --method lora)")
        runs.append((chosen, folder))
    bases = {adapter_base(folder) for _, folder in runs}
    if len(bases) > 1:
        raise GenerationError(f"--style: the runs have different base models ({', '.join(sorted(bases))}); "
                              "adapters mix only on one base")
    # Adapter names become module keys, so they are numbered rather than taken from run names.
    names = [f"style{i}" for i in range(len(runs))]
    model = PeftModel.from_pretrained(load_base_model(bases.pop()), runs[0][1], adapter_name=names[0])
    for name, (_, folder) in zip(names[1:], runs[1:]):
        model.load_adapter(folder, adapter_name=name)
    first, folder = runs[0]
    index = open_copy_index(run_token_set(ws, first), on_progress)
    double = Double(_ready(model), AutoTokenizer.from_pretrained(folder), "", index, _context_length(model),
                    styles=dict(zip(weights, names)))
    return set_style_mix(double, weights)


MIXES_KEPT = 8  # weighted adapters kept in memory for quick switching between recent mixes


def set_style_mix(double: Double, weights: dict[str, float]) -> Double:
    """Make `weights` (run → weight, over the runs the mix was loaded with) the active mix of `double`, in place.

    The studio's sliders call this between generations; a mix already built is reused.
    """
    unknown = sorted(set(weights) - set(double.styles))
    if unknown:
        raise GenerationError(f"style {', '.join(unknown)}: not among the loaded runs ({', '.join(double.styles)})")
    if not any(w != 0 for w in weights.values()):
        raise GenerationError("style: give at least one run a weight other than 0")
    runs = [run for run in double.styles if weights.get(run, 0.0) != 0]
    name = "mix-" + "-".join(f"{double.styles[r]}_{weights[r]:g}" for r in runs).replace(".", "p")
    model = double.model
    if name not in model.peft_config:
        built = [a for a in model.peft_config if a.startswith("mix-")]
        for old in built[: max(0, len(built) - MIXES_KEPT + 1)]:
            if old != model.active_adapter:
                model.delete_adapter(old)
        model.add_weighted_adapter([double.styles[r] for r in runs], [weights[r] for r in runs], name,
                                   combination_type="cat")
    model.set_adapter(name)
    model.eval()
    double.mix = {run: weights.get(run, 0.0) for run in double.styles}
    double.checkpoint = "+".join(f"{run}={weight:g}" for run, weight in double.mix.items())
    return double


def _ready(model: Any) -> Any:
    """In eval mode, on the GPU when there is one."""
    import torch

    model.eval()
    return model.to("cuda") if torch.cuda.is_available() else model


def _context_length(model: Any) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class CopyScore:
    """The longest span of a text found in the training texts."""

    tokens: int
    text: str = ""
    work: str | None = None  # title of the source work
    author: str | None = None
    work_id: str | None = None


@dataclass(frozen=True)
class Variant:
    text: str
    new_tokens: int
    finish_reason: str  # "stop": end of text or a stop string; "length": max_new_tokens; "abort": asked to stop
    copy: CopyScore | None = None
    ids: tuple[int, ...] = ()  # the generated token ids (up to end of text)


@dataclass(frozen=True)
class Generation:
    prompt: str
    prompt_tokens: int
    checkpoint: str
    decoding: Decoding
    guard: int
    variants: list[Variant] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt, "prompt_tokens": self.prompt_tokens, "checkpoint": self.checkpoint,
            "guard": self.guard, "decoding": {**asdict(self.decoding), "stop": list(self.decoding.stop)},
            "variants": [{"text": v.text, "new_tokens": v.new_tokens, "finish_reason": v.finish_reason,
                          "copy": asdict(v.copy) if v.copy else None} for v in self.variants],
        }


def copy_score(index: CopyIndex | None, tokenizer: Any, text: str) -> CopyScore | None:
    """The longest span of `text` (tokenized as the training texts were) that occurs in the training texts."""
    if index is None:
        return None
    ids = tokenizer(text, add_special_tokens=False).input_ids
    span = index.longest_span(ids)
    if span is None:
        return CopyScore(0)
    source, _ = index.source_at(span.position)
    return CopyScore(span.length, tokenizer.decode(ids[span.start : span.end]), source.title, source.author, source.id)


# ---------------------------------------------------------------- the originality guard


def originality_guard(index: CopyIndex, n: int, eos_id: int | None) -> Any:
    """A transformers LogitsProcessor that bans every token completing an `n`-gram of the training texts.

    The n-gram is read over the prompt and what has been generated, so a continuation of a
    quoted passage cannot copy on either. End of text is never banned (it copies nothing).
    """
    import torch
    from transformers import LogitsProcessor

    class OriginalityGuard(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if input_ids.shape[1] < n - 1:
                return scores
            contexts = input_ids[:, input_ids.shape[1] - (n - 1):].cpu().numpy()
            for row, banned in enumerate(index.successors(contexts)):
                banned = banned[(banned < scores.shape[1]) & (banned != (eos_id if eos_id is not None else -1))]
                if len(banned):
                    scores[row, torch.from_numpy(banned).to(scores.device)] = -float("inf")
            return scores

    return OriginalityGuard()


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


# ---------------------------------------------------------------- streaming


class VariantStreamer:
    """Receives each step's tokens from `generate` and hands out each variant's new text as it grows.

    Text is held back while it could still turn into a stop string, and while it ends in an
    incomplete UTF-8 character, so what is handed out is always a prefix of the final text.
    """

    def __init__(self, tokenizer: Any, rows: int, stop: tuple[str, ...], on_text: Callable[[int, str], None]) -> None:
        self.tokenizer, self.stop, self.on_text = tokenizer, stop, on_text
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.sent = [0] * rows
        self.done = [False] * rows
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate passes the prompt first
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token == self.tokenizer.eos_token_id:
                self._flush(row, final=True)
                continue
            self.ids[row].append(token)
            self._flush(row, final=False)

    def end(self) -> None:
        for row in range(len(self.ids)):
            if not self.done[row]:
                self._flush(row, final=True)

    def _flush(self, row: int, final: bool) -> None:
        text, stopped = cut_at_stop(self.tokenizer.decode(self.ids[row], skip_special_tokens=True), self.stop)
        if stopped or final:
            self.done[row] = True
        else:
            text = text[: len(text) - _held_back(text, self.stop)]
        if len(text) > self.sent[row]:
            self.on_text(row, text[self.sent[row]:])
            self.sent[row] = len(text)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string (not included), and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _held_back(text: str, stop: tuple[str, ...]) -> int:
    """How many trailing characters might still change: an unfinished character or the start of a stop string."""
    held = len(text) - len(text.rstrip("\ufffd"))
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                held = max(held, k)
                break
    return held


# ---------------------------------------------------------------- generate


def prompt_ids(double: Double, prompt: str, max_new_tokens: int) -> Any:
    """The prompt's ids, cut from the left so prompt and continuation stay within what the model was trained on.

    When the continuation alone is longer than that, the prompt keeps at most half of it and
    the continuation runs past the trained length (it may degrade there), but never past
    the model's positions.
    """
    ids = double.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    if ids.shape[1] == 0 and double.eos_id is not None:  # an empty prompt: start a new text
        import torch

        ids = torch.tensor([[double.eos_id]])
    budget = double.trained_length or double.context_length
    if budget:
        keep = max(budget - max_new_tokens, min(ids.shape[1], budget // 2), 1)
        ids = ids[:, max(0, ids.shape[1] - keep):]
    limit = double.context_length
    if limit and ids.shape[1] + max_new_tokens > limit:
        raise GenerationError(f"max_new_tokens {max_new_tokens} does not fit the model's context of {limit} tokens")
    return ids


def generate(
    double: Double, prompt: str, decoding: Decoding, n: int = 1, guard: int = 0,
    on_text: Callable[[int, str], None] | None = None, should_stop: Callable[[], bool] | None = None,
) -> Generation:
    """`n` continuations of `prompt` in one batched call; `on_text(variant, new_text)` streams them (not beams).

    `should_stop()` is asked after every step; when it answers True, every variant ends
    where it is, with finish reason "abort".
    """
    if n < 1:
        raise GenerationError(f"n = {n}: ask for 1 variant or more")
    if guard and double.index is None:
        raise GenerationError("the originality guard needs the copy index of the training texts")
    if guard == 1 or guard < 0:
        raise GenerationError(f"--guard {guard}: 0 turns the guard off; otherwise 2 tokens or more")
    if decoding.num_beams > 1 and n > decoding.num_beams:
        raise GenerationError(f"--n {n} with beam search: at most num_beams ({decoding.num_beams}) variants")
    ids = prompt_ids(double, prompt, decoding.max_new_tokens)
    streamer = VariantStreamer(double.tokenizer, n, decoding.stop, on_text) if on_text and decoding.num_beams == 1 else None
    rows = sample_ids(double, ids, decoding, guard, n, streamer, should_stop)
    aborted = should_stop is not None and should_stop()
    variants = [_variant(double, row, decoding, aborted) for row in rows]
    return Generation(prompt, int(ids.shape[1]), double.checkpoint, decoding, guard, variants)


def sample_ids(
    double: Double, prompts: Any, decoding: Decoding, guard: int = 0, n: int = 1, streamer: Any = None,
    should_stop: Callable[[], bool] | None = None, min_new_tokens: int = 0,
) -> list[list[int]]:
    """The new token ids for each of `n` variants of each row of `prompts` (equal-length rows), cut at end of text.

    `min_new_tokens` bans the end of text until that many tokens are written.
    """
    import torch

    guard_processor = originality_guard(double.index, guard, double.eos_id) if guard else None
    device = next(double.model.parameters()).device
    beams = decoding.num_beams > 1
    batch = (prompts if beams else prompts.repeat_interleave(n, dim=0)).to(device)
    # Neutral values override a checkpoint's generation_config.json, so generate adds no processor of its own.
    neutral: dict[str, Any] = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    if decoding.do_sample:
        neutral |= {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "typical_p": 1.0, "min_p": 0.0}
    torch.manual_seed(decoding.seed)
    with torch.no_grad():
        output = double.model.generate(
            input_ids=batch, attention_mask=torch.ones_like(batch),
            do_sample=decoding.do_sample, num_beams=decoding.num_beams, num_return_sequences=n if beams else 1,
            max_new_tokens=decoding.max_new_tokens, logits_processor=logits_processors(decoding, guard_processor),
            stop_strings=list(decoding.stop) or None, tokenizer=double.tokenizer if decoding.stop else None,
            pad_token_id=double.eos_id, eos_token_id=double.eos_id, streamer=streamer,
            stopping_criteria=_stopping(should_stop), min_new_tokens=min_new_tokens or None, **neutral,
        )
    rows = []
    for row in output[:, prompts.shape[1]:].tolist():
        if double.eos_id is not None and double.eos_id in row:
            row = row[: row.index(double.eos_id)]
        rows.append(row)
    return rows


def _stopping(should_stop: Callable[[], bool] | None) -> Any:
    """A transformers stopping criterion that ends every row once `should_stop()` is True."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    if should_stop is None:
        return None

    class Abort(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Abort()])


def _variant(double: Double, new_ids: list[int], decoding: Decoding, aborted: bool = False) -> Variant:
    text, stopped = cut_at_stop(double.tokenizer.decode(new_ids, skip_special_tokens=True), decoding.stop)
    reason = "stop" if stopped or len(new_ids) < decoding.max_new_tokens else "length"
    if aborted and not stopped and len(new_ids) < decoding.max_new_tokens:
        reason = "abort"
    return Variant(text, len(new_ids), reason, copy_score(double.index, double.tokenizer, text), tuple(new_ids))


def with_seed(decoding: Decoding, seed: int | None) -> Decoding:
    return replace(decoding, seed=random_seed() if seed is None else seed)
