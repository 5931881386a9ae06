"""Fast decoding: a static KV cache and, on CUDA, a compiled decoding step (transformers' StaticCache + torch.compile).

    prompt ids (n rows, one per variant) ──► prefill: one eager forward that fills the static cache
                                                │ logits of the last position (fp32)
                                                ▼
       processors (generation/decoding.py: penalties, the guard, the samplers, in that order)
                                                ▼
       argmax (greedy) or one draw from the softmax ──► streamer, EOS, stop strings, abort
                                                │
       decoding step: one token per row through the compiled forward (CUDA graphs), in place
       in the cache ◄───────────────────────────┘

`model.generate` with a dynamic cache launches hundreds of small kernels per token and
re-plans its attention masks every step; on a GPU the step is then bound by the Python
and the launches, not by reading the weights. Here the cache is allocated once (per model,
batch and length bucket) and the step is one CUDA graph. The loop is `generate`'s sampling
loop, written out: the same processors in the same order, the same draw
(`torch.multinomial` on the softmax, from the global generator), the same padding of
finished rows, so greedy decoding gives the same tokens as `model.generate` (tested on the
CPU, where the step runs uncompiled).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

# One set of static caches per loaded model (dropped with the model): the compiled step is
# bound to the cache's tensors, so a cache is kept and reset rather than made anew per call.
_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
LENGTH_BUCKET = 256  # cache lengths are rounded up to this, so the step is compiled for few shapes
DECODERS_KEPT = 4  # per model: caches for the last few (batch, length) pairs; the oldest is dropped
# Compiling the step costs tens of seconds, and saves milliseconds per token: a model loaded for one
# command (`dvoinik generate`, one checkpoint of `evaluate`: a few hundred steps) never earns it back,
# a served one (the studio, the APIs) does within a few requests. So a model's first decoding steps
# go through `generate`, and the step is compiled once the model has shown it stays.
COMPILE_AFTER_STEPS = 2000
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # decoding steps asked of each model


def causal_model(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (its LoRA layers are in it), or the model itself."""
    inner = getattr(model, "get_base_model", None)
    return inner() if callable(inner) else model


def available(model: Any, num_beams: int) -> bool:
    """Whether the fast path applies: a CUDA model whose architecture compiles with a static cache, no beams."""
    inner = causal_model(model)
    device = next(inner.parameters()).device
    return device.type == "cuda" and num_beams == 1 and bool(getattr(inner, "_can_compile_fullgraph", False))


def worth_it(model: Any, num_beams: int, steps: int) -> bool:
    """Whether to decode `steps` more steps of `model` on the compiled fast path: where it applies, once the
    model has been asked for COMPILE_AFTER_STEPS steps before (these are counted here)."""
    if not available(model, num_beams):
        return False
    inner = causal_model(model)
    done = _STEPS.get(inner, 0)
    _STEPS[inner] = done + steps
    return done >= COMPILE_AFTER_STEPS


@dataclass
class StaticDecoder:
    """A model's static cache for one batch size and length, and its decoding step."""

    model: Any
    cache: Any
    batch: int
    length: int
    step: Any  # model(...) compiled on CUDA, the model itself elsewhere

    def prefill(self, input_ids: Any) -> Any:
        """Fill the cache with the prompts; the last position's logits in fp32."""
        import torch

        self.cache.reset()
        out = self.model(input_ids=input_ids, cache=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].to(copy=True, dtype=torch.float32)

    def next_logits(self, ids: Any, attention_mask: Any) -> Any:
        """The next logits (fp32) after `ids`, whose last token is not in the cache yet: one (compiled) step.

        The step's inputs, and its 4-D mask over the whole static cache, are made as `generate`
        makes them, outside the compiled graph; the logits are copied out of it (a CUDA graph
        overwrites its outputs on the next replay).
        """
        import torch

        inputs = self.model.prepare_inputs_for_generation(ids, next_sequence_length=1, cache=self.cache,
                                                          attention_mask=attention_mask, use_cache=True)
        out = self.step(**inputs, return_dict=True)
        return out.logits[:, -1, :].to(copy=True, dtype=torch.float32)


def decoder_for(model: Any, batch: int, length: int, compile: bool) -> StaticDecoder:
    """The static decoder of `model` for `batch` rows of up to `length` tokens, made once and then reused."""
    from transformers import StaticCache

    inner = causal_model(model)
    bucket = -(-length // LENGTH_BUCKET) * LENGTH_BUCKET
    limit = getattr(inner.config.get_text_config(), "max_position_embeddings", None)
    if limit:
        bucket = min(bucket, max(limit, length))
    decoders = _DECODERS.setdefault(inner, {})
    key = (batch, bucket, compile)
    if key not in decoders:
        for old in list(decoders)[: max(0, len(decoders) - DECODERS_KEPT + 1)]:
            del decoders[old]  # its cache's memory goes back when nothing else holds it
        step = inner
        if compile:
            from transformers import CompileConfig

            step = inner.get_compiled_call(CompileConfig())  # generate's own choice: inductor, CUDA graphs
        decoders[key] = StaticDecoder(inner, StaticCache(config=inner.config, max_cache_len=bucket), batch, bucket, step)
    return decoders[key]


def _split_at_guard(processors: Any) -> tuple[Any, Any, Any]:
    """(processors before the guard, the guard or None, processors after it): the guard's lookup is run apart."""
    from transformers import LogitsProcessorList

    at = next((i for i, p in enumerate(processors) if hasattr(p, "banned") and hasattr(p, "ban")), None)
    if at is None:
        return processors, None, LogitsProcessorList()
    return LogitsProcessorList(processors[:at]), processors[at], LogitsProcessorList(processors[at + 1:])


def sample(
    model: Any, input_ids: Any, logits_processor: Any, *, do_sample: bool, max_new_tokens: int,
    eos_token_id: int | None, pad_token_id: int | None, stopping_criteria: Any = None, streamer: Any = None,
    min_new_tokens: int = 0, compile: bool | None = None,
) -> Any:
    """`model.generate(input_ids, ...)` for sampling and greedy decoding, on a static cache; the ids, prompt first.

    `logits_processor` is the list of generation/decoding.py; `stopping_criteria` (stop
    strings, an abort) is asked after every token, as `generate` asks it.

    The loop keeps the GPU busy: each step's tokens are copied to the host, the next step's
    forward is queued behind the copy, and only then does the host wait (for the copy alone)
    and do its share: the streamer, the end-of-text check, and the guard's lookup for the
    next step, all while the GPU computes the next logits.
    """
    import torch
    from transformers import (
        LogitsProcessorList,
        MinNewTokensLengthLogitsProcessor,
        SuppressTokensAtBeginLogitsProcessor,
        SuppressTokensLogitsProcessor,
    )

    batch, prompt_length = input_ids.shape
    device = input_ids.device
    on_gpu = device.type == "cuda"
    compile = on_gpu if compile is None else compile
    decoder = decoder_for(model, batch, prompt_length + max_new_tokens, compile)
    processors = LogitsProcessorList()
    if min_new_tokens and eos_token_id is not None:  # first, as generate puts it
        processors.append(MinNewTokensLengthLogitsProcessor(prompt_length, min_new_tokens, eos_token_id, device=device))
    # What generate takes from the model's generation config: a voices run's markers are never written, and an
    # interview's answer may not open with a token that ends its turn (generation/voices.py, interview.py).
    config = causal_model(model).generation_config
    if config.suppress_tokens:
        processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens, device=device))
    if config.begin_suppress_tokens:
        processors.append(SuppressTokensAtBeginLogitsProcessor(config.begin_suppress_tokens, prompt_length,
                                                               device=device))
    processors.extend(logits_processor or [])
    before, guard, after = _split_at_guard(processors)

    total = prompt_length + max_new_tokens
    ids = torch.empty((batch, total), dtype=input_ids.dtype, device=device)
    ids[:, :prompt_length] = input_ids
    host = torch.empty((batch, total), dtype=input_ids.dtype)  # the same ids, on the host
    host[:, :prompt_length] = input_ids.cpu()
    # Each step's tokens and which rows go on land here: contiguous and pinned, so they are copied async.
    landed = torch.empty(batch, dtype=input_ids.dtype, pin_memory=on_gpu)
    running = torch.empty(batch, dtype=torch.bool, pin_memory=on_gpu)
    mask = torch.ones((batch, total), dtype=torch.long, device=device)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    pad = torch.tensor(pad_token_id if pad_token_id is not None else 0, device=device)

    def lookup(length: int) -> Any:
        if guard is None or length < guard.context:
            return None
        return guard.banned(host[:, length - guard.context : length].numpy())

    if streamer is not None:
        streamer.put(input_ids.cpu())
    length = prompt_length
    with torch.no_grad():
        logits = decoder.prefill(input_ids)
        bans = lookup(length)
        while True:
            scores = before(ids[:, :length], logits)
            if bans is not None:
                scores = guard.ban(scores, bans)
            scores = after(ids[:, :length], scores)
            if do_sample:
                tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            else:
                tokens = torch.argmax(scores, dim=-1)
            if pad_token_id is not None:
                tokens = torch.where(unfinished, tokens, pad)
            ids[:, length] = tokens
            length += 1
            if eos_token_id is not None:
                unfinished &= tokens != eos_token_id
            if stopping_criteria:  # stop strings, the abort: matched on the device, as generate does
                unfinished &= ~stopping_criteria(ids[:, :length], scores)
            landed.copy_(tokens, non_blocking=True)
            running.copy_(unfinished, non_blocking=True)
            copied = torch.cuda.Event() if on_gpu else None
            if copied is not None:
                copied.record()
            last = length - prompt_length >= max_new_tokens
            if not last:
                upcoming = decoder.next_logits(ids[:, :length], mask[:, :length])  # queued behind the copies
            if copied is not None:
                copied.synchronize()  # the copies only: the forward goes on
            new = landed.clone()
            host[:, length - 1] = new
            if streamer is not None:
                streamer.put(new)
            if last or not bool(running.any()):
                break
            bans = lookup(length)
            logits = upcoming
    if streamer is not None:
        streamer.end()
    return ids[:, :length]
