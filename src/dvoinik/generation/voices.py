"""Writing in a voice: a run's author markers put first in the context, one voice or a weighted mix.

    voice = parse_voice("Рубцов", double.voices)            # {"Семён Рубцов": 1.0}
    voice = parse_voice("Ключарёва=0.7,Рубцов=0.3", ...)     # a mix
    ids = voiced_ids(voices, prompt_ids, voice, max_new, ...)   # the marker first, the prompt cut to fit
    rows = sample_mixed(double, prompt_ids, mix, decoding)     # a mix: one pass per voice, logits weighted

A mix is drawn from the weighted sum of the logits of one pass per voice, each pass
conditioned on its own marker. The other way, one pass whose marker embedding is the
weighted mean of the voices' marker embeddings, is cheaper, and was measured against it
(`benchmarks/voice_mix.py`, docs/voices.md): the weighted logits follow the weights more
closely, so they are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dvoinik.generation.decoding import Decoding, GenerationError, logits_processors
from dvoinik.generation.double import weighted_names
from dvoinik.generation.guard import originality_guard
from dvoinik.generation.streamer import cut_at_stop

Voice = dict[str, float]  # author -> weight (weights sum to 1)


def _voices_line(voices: dict[str, int]) -> str:
    return ", ".join(voices) if voices else "none: this run was trained without [train] voices = true"


def resolve_voice_name(name: str, voices: dict[str, int]) -> str:
    """The author a user's `name` means: exact, else case-insensitive, else the one author whose name contains it."""
    wanted = name.strip()
    if wanted in voices:
        return wanted
    folded = wanted.casefold()
    exact = [v for v in voices if v.casefold() == folded]
    if exact:
        return exact[0]
    partial = [v for v in voices if folded and folded in v.casefold()]
    if len(partial) == 1:
        return partial[0]
    if len(partial) > 1:
        raise GenerationError(f"voice {name!r} matches several authors ({', '.join(partial)}); give more of the name")
    raise GenerationError(f"no voice {name!r} (voices: {_voices_line(voices)})")


def parse_voice(text: str, voices: dict[str, int]) -> Voice:
    """`"NAME"` → one voice; `"A=0.7,B=0.3"` → a mix, weights normalised to sum to 1. Names may be abbreviated."""
    if not voices:
        raise GenerationError(f"--voice {text!r}: this run has no voices (train it with [train] voices = true)")
    text = text.strip()
    if not text:
        raise GenerationError(f"--voice: name a voice ({_voices_line(voices)})")
    if "=" not in text:
        return {resolve_voice_name(text, voices): 1.0}
    def malformed(item: str) -> GenerationError:
        return GenerationError(f"--voice {item!r}: expected NAME=WEIGHT with a weight of 0 or more, "
                               "e.g. --voice A=0.7,B=0.3")

    weights: dict[str, float] = {}
    for name, weight in weighted_names(text, malformed, accept=lambda w: 0 <= w < float("inf")):
        author = resolve_voice_name(name, voices)
        weights[author] = weights.get(author, 0.0) + weight
    return normalise(weights)


def normalise(weights: dict[str, float]) -> Voice:
    """Weights over voices with a weight above 0, scaled to sum to 1."""
    kept = {name: float(w) for name, w in weights.items() if w > 0}
    total = sum(kept.values())
    if not kept or total <= 0:
        raise GenerationError("--voice: give at least one voice a weight above 0")
    return {name: w / total for name, w in kept.items()}


def check_voice(voice: Voice, voices: dict[str, int]) -> Voice:
    """`voice` (author → weight, e.g. from an API request) validated against the double's voices and normalised."""
    if not voices:
        raise GenerationError("this double has no voices (train it with [train] voices = true)")
    resolved: dict[str, float] = {}
    for name, weight in voice.items():
        if not isinstance(weight, (int, float)) or weight != weight or weight < 0:
            raise GenerationError(f"voice {name!r}: the weight must be a number of 0 or more")
        author = resolve_voice_name(name, voices)
        resolved[author] = resolved.get(author, 0.0) + float(weight)
    return normalise(resolved)


def default_voice(voices: dict[str, int]) -> Voice | None:
    """A voices run writes in the target's voice unless told otherwise (the target's marker comes first)."""
    return {next(iter(voices)): 1.0} if voices else None


def describe(voice: Voice | None) -> str:
    """`"A"` for one voice, `"A=0.7+B=0.3"` for a mix, "" for none."""
    if not voice:
        return ""
    if len(voice) == 1:
        return next(iter(voice))
    return "+".join(f"{name}={weight:.2g}" for name, weight in voice.items())


def voiced_ids(voices: dict[str, int], ids: Any, voice: Voice, max_new_tokens: int, budget: int | None,
               eos_id: int | None) -> Any:
    """`ids` (1 × length, already cut to fit `budget` with the continuation) with the voice's marker first.

    The marker takes one more position, so the prompt gives up its first token when the
    whole would pass `budget`. An empty prompt (just end-of-text) becomes the marker alone:
    training blocks start with the marker and then text. (A mix is marked with its first
    voice's id here; `sample_mixed` gives each pass its own.)
    """
    import torch

    first = voices[next(iter(voice))]
    if ids.shape[1] == 1 and eos_id is not None and int(ids[0, 0]) == eos_id:
        ids = ids[:, :0]
    if budget and ids.shape[1] > 1 and ids.shape[1] + 1 + max_new_tokens > budget:
        ids = ids[:, 1:]
    return torch.cat([torch.full((ids.shape[0], 1), first, dtype=ids.dtype), ids], dim=1)


def sample_mixed(double: Any, prompts: Any, voice: Voice, decoding: Decoding, guard: int = 0, n: int = 1,
                 streamer: Any = None, should_stop: Callable[[], bool] | None = None,
                 min_new_tokens: int = 0) -> list[list[int]]:
    """`n` continuations of each row of `prompts` (equal-length rows, no marker) in a mix of voices: the new ids of
    each, cut at end of text, in the order `sample_ids` gives them (variants of a row together).

    One pass per voice, all in one batch (voice k's copy of continuation i is row k·rows + i), each
    with its own marker first. At every step the variant's next-token logits are the
    weighted sum of its passes' logits (a product of the voices' distributions, as
    weights summing to 1 make it); then the decoding's processors (penalties, the guard,
    the samplers) apply to that one row as to any generation, one token is drawn, and
    every pass of the variant takes it.
    """
    import torch

    if decoding.num_beams > 1:
        raise GenerationError("a mixed voice samples or decodes greedily; beam search takes one voice")
    names = list(voice)
    k = len(names)
    model = double.model
    device = next(model.parameters()).device
    weights = torch.tensor([voice[name] for name in names], device=device).view(k, 1, 1)
    markers = torch.tensor([double.voices[name] for name in names])
    text = prompts.repeat_interleave(n, dim=0).to(device)  # what the penalties and the guard read: no markers
    count = text.shape[0]
    rows = torch.cat([markers.to(device).repeat_interleave(count).unsqueeze(1), text.repeat(k, 1)], dim=1)
    guard_processor = originality_guard(double.index, guard, double.eos_id) if guard else None
    processors = logits_processors(decoding, guard_processor)
    eos = double.eos_id
    banned = list(double.voices.values())
    finished = torch.zeros(count, dtype=torch.bool, device=device)
    new: list[list[int]] = [[] for _ in range(count)]
    cache = None
    torch.manual_seed(decoding.seed)
    if streamer is not None:
        streamer.put(text.cpu())  # as transformers does: the prompt first
    with torch.no_grad():
        step_input = rows
        for step in range(decoding.max_new_tokens):
            output = model(input_ids=step_input, cache=cache, use_cache=True)
            cache = output.cache
            logits = output.logits[:, -1, :].float()
            logits[:, banned] = -float("inf")
            scores = processors(text, (weights * logits.view(k, count, -1)).sum(dim=0))
            if eos is not None and step < min_new_tokens:
                scores[:, eos] = -float("inf")
            if decoding.do_sample:
                tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1).squeeze(1)
            else:
                tokens = scores.argmax(dim=-1)
            if eos is not None:
                tokens = torch.where(finished, torch.full_like(tokens, eos), tokens)
            if streamer is not None:
                streamer.put(tokens.cpu())
            text = torch.cat([text, tokens.unsqueeze(1)], dim=1)
            for i, token in enumerate(tokens.tolist()):
                if finished[i]:
                    continue
                if token == eos:
                    finished[i] = True
                    continue
                new[i].append(token)
                if decoding.stop and cut_at_stop(double.tokenizer.decode(new[i], skip_special_tokens=True),
                                                 decoding.stop)[1]:
                    finished[i] = True
            if bool(finished.all()) or (should_stop is not None and should_stop()):
                break
            step_input = tokens.repeat(k).unsqueeze(1)
    if streamer is not None:
        streamer.end()
    return new
