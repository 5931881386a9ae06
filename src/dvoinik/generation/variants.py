"""N continuations of a prompt in one batched call, each with its copy score.

Decoding runs through `model.generate` of transformers with the processors of
`generation.decoding` (the guard among them). Every variant carries a copy score: the
longest span of its text found in the training texts, in tokens (the token set's copy
index, what the guard sees) and in normalised words (the word index, which no change of
layout, quotes, dashes or sub-word split hides from), with the work it comes from, and
whether it holds a copy the guard could not see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dvoinik.generation import fast as fast_decoding
from dvoinik.generation.copyindex import CopyIndex
from dvoinik.generation.decoding import Decoding, GenerationError, logits_processors
from dvoinik.generation.double import Double
from dvoinik.generation.guard import originality_guard
from dvoinik.generation.streamer import StopStringsCriterion, VariantStreamer, cut_at_stop, decode_continuation
from dvoinik.generation.voices import Voice, default_voice, sample_mixed, voiced_ids
from dvoinik.generation.wordindex import WordIndex
from dvoinik.tokens import added_prefix


@dataclass(frozen=True)
class CopyScore:
    """The longest span of a text found in the training texts: in token ids, and in normalised words."""

    tokens: int
    text: str = ""
    work: str | None = None  # title of the source work
    author: str | None = None
    work_id: str | None = None
    words: int | None = None  # the longest run of normalised words found (None: no word index)
    words_tokens: int = 0  # how many tokens of the text that run takes
    words_text: str = ""
    words_work: str | None = None
    words_author: str | None = None
    words_work_id: str | None = None
    # Written with the guard at N on, yet holding N words (or N re-tokenized tokens) of a training text: a copy
    # the token guard could not see, because its layout or sub-word split differs from the book's.
    missed_by_guard: bool = False


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
    voice: Voice | None = None  # a run with voices: the voice (or mix) it wrote in

    def to_json(self) -> dict:
        return {
            "prompt": self.prompt, "prompt_tokens": self.prompt_tokens, "checkpoint": self.checkpoint,
            "guard": self.guard, "decoding": {**asdict(self.decoding), "stop": list(self.decoding.stop)},
            "variants": [{"text": v.text, "new_tokens": v.new_tokens, "finish_reason": v.finish_reason,
                          "copy": asdict(v.copy) if v.copy else None} for v in self.variants],
            **({"voice": self.voice} if self.voice else {}),
        }


def copy_score(index: CopyIndex | None, tokenizer: Any, text: str, words: WordIndex | None = None,
               guard: int = 0) -> CopyScore | None:
    """The longest span of `text` that occurs in the training texts: tokenized as they were, and as normalised words.

    `guard`: the N the text was written with (0: off), to say whether it holds a copy the guard could not see.
    """
    if index is None:
        return None
    ids = tokenizer(text, add_special_tokens=False).input_ids
    span = index.longest_span(ids)
    score = CopyScore(0)
    if span is not None:
        source, _ = index.source_at(span.position)
        score = CopyScore(span.length, tokenizer.decode(ids[span.start : span.end]), source.title, source.author,
                          source.id)
    if words is None:
        return score
    run = words.longest(words.match(text))
    if run is None:
        return replace(score, words=0, missed_by_guard=0 < guard <= score.tokens)
    run_tokens = len(tokenizer(text[run.text_start : run.text_end], add_special_tokens=False).input_ids)
    # N words hold N tokens or more: had they been the book's tokens too, the guard would have banned them.
    missed = guard > 0 and (run.words >= guard or score.tokens >= guard)
    return replace(score, words=run.words, words_tokens=run_tokens, words_text=text[run.text_start : run.text_end],
                   words_work=run.work, words_author=run.author, words_work_id=run.work_id, missed_by_guard=missed)


def prompt_ids(double: Double, prompt: str, max_new_tokens: int) -> Any:
    """The prompt's ids, cut from the left so prompt and continuation stay within what the model was trained on.

    When the continuation alone is longer than that, the prompt keeps at most half of it and
    the continuation runs past the trained length (it may degrade there), but never past
    the model's positions.
    """
    import torch

    ids = double.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    prefix = added_prefix(double.tokenizer)  # a BOS the base opens every text with
    if ids.shape[1] == 0 and double.eos_id is not None and not prefix:  # an empty prompt: start a new text
        ids = torch.tensor([[double.eos_id]])
    budget = double.trained_length or double.context_length
    if budget:
        keep = max(budget - max_new_tokens - len(prefix), min(ids.shape[1], budget // 2), 1)
        ids = ids[:, max(0, ids.shape[1] - keep):]
    if prefix:
        ids = torch.cat([torch.tensor([prefix], dtype=ids.dtype), ids], dim=1)
    limit = double.context_length
    if limit and ids.shape[1] + max_new_tokens > limit:
        raise GenerationError(f"max_new_tokens {max_new_tokens} does not fit the model's context of {limit} tokens")
    return ids


def generate(
    double: Double, prompt: str, decoding: Decoding, n: int = 1, guard: int = 0,
    on_text: Callable[[int, str], None] | None = None, should_stop: Callable[[], bool] | None = None,
    voice: Voice | None = None,
) -> Generation:
    """`n` continuations of `prompt` in one batched call; `on_text(variant, new_text)` streams them (not beams).

    `should_stop()` is asked after every step; when it answers True, every variant ends
    where it is, with finish reason "abort". A double with voices writes in `voice`
    (generation/voices.py), by default its target's.
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
    if voice and not double.voices:
        raise GenerationError(f"{double.checkpoint}: this run has no voices (train it with [train] voices = true)")
    voice = voice or default_voice(double.voices)
    if voice:
        ids = voiced_ids(double.voices, ids, voice, decoding.max_new_tokens,
                         double.trained_length or double.context_length, double.eos_id)
    streamer = VariantStreamer(double.tokenizer, n, decoding.stop, on_text) if on_text and decoding.num_beams == 1 else None
    if voice and len(voice) > 1:  # a mix: one pass per voice, their logits weighted (generation/voices.py)
        rows = sample_mixed(double, ids[:, 1:], voice, decoding, guard, n, streamer, should_stop)
    else:
        rows = sample_ids(double, ids, decoding, guard, n, streamer, should_stop)
    aborted = should_stop is not None and should_stop()
    variants = [_variant(double, row, decoding, aborted, guard) for row in rows]
    return Generation(prompt, int(ids.shape[1]), double.checkpoint, decoding, guard, variants, voice)


def sample_ids(
    double: Double, prompts: Any, decoding: Decoding, guard: int = 0, n: int = 1, streamer: Any = None,
    should_stop: Callable[[], bool] | None = None, min_new_tokens: int = 0, fast: bool | None = None,
) -> list[list[int]]:
    """The new token ids for each of `n` variants of each row of `prompts` (equal-length rows), cut at end of text.

    `min_new_tokens` bans the end of text until that many tokens are written. `fast` decodes on a
    static cache with a compiled step (generation/fast.py); by default where it applies (CUDA, no beams) and
    pays (a model that has already decoded a few thousand steps: the studio's, the APIs').
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
    if fast is None:
        fast = fast_decoding.worth_it(double.model, decoding.num_beams, decoding.max_new_tokens)
    if fast:
        output = fast_decoding.sample(  # generate's sampling loop on a static cache, the same processors
            double.model, batch, logits_processors(decoding, guard_processor), do_sample=decoding.do_sample,
            max_new_tokens=decoding.max_new_tokens, eos_token_id=double.eos_id, pad_token_id=double.eos_id,
            stopping_criteria=_stopping(should_stop, double.tokenizer, decoding.stop, batch.shape[1]), streamer=streamer,
            min_new_tokens=min_new_tokens,
        )
        return _cut_rows(double, output[:, prompts.shape[1]:].tolist())
    with torch.no_grad():
        output = double.model.generate(
            input_ids=batch, attention_mask=torch.ones_like(batch),
            do_sample=decoding.do_sample, num_beams=decoding.num_beams, num_return_sequences=n if beams else 1,
            max_new_tokens=decoding.max_new_tokens, logits_processor=logits_processors(decoding, guard_processor),
            pad_token_id=double.eos_id, eos_token_id=double.eos_id, streamer=streamer,
            stopping_criteria=_stopping(should_stop, double.tokenizer, decoding.stop, batch.shape[1]),
            min_new_tokens=min_new_tokens or None, **neutral,
        )
    return _cut_rows(double, output[:, prompts.shape[1]:].tolist())


def _cut_rows(double: Double, generated: list[list[int]]) -> list[list[int]]:
    rows = []
    for row in generated:
        if double.eos_id is not None and double.eos_id in row:
            row = row[: row.index(double.eos_id)]
        rows.append(row)
    return rows


def _stopping(should_stop: Callable[[], bool] | None, tokenizer: Any = None, stop: tuple[str, ...] = (),
              prompt_length: int = 0) -> Any:
    """Transformers stopping criteria: a row ends at a stop string; every row once `should_stop()` is True."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    criteria = StoppingCriteriaList([StopStringsCriterion(tokenizer, stop, prompt_length)] if stop else [])
    if should_stop is None:
        return criteria or None

    class Abort(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    criteria.append(Abort())
    return criteria


def _variant(double: Double, new_ids: list[int], decoding: Decoding, aborted: bool = False, guard: int = 0) -> Variant:
    text, stopped = cut_at_stop(decode_continuation(double.tokenizer, new_ids), decoding.stop)
    reason = "stop" if stopped or len(new_ids) < decoding.max_new_tokens else "length"
    if aborted and not stopped and len(new_ids) < decoding.max_new_tokens:
        reason = "abort"
    copy = copy_score(double.index, double.tokenizer, text, double.words, guard)
    return Variant(text, len(new_ids), reason, copy, tuple(new_ids))
