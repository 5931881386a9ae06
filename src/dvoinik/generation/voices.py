"""Writing in a voice: a run's author markers put first in the context, one voice or a weighted mix.

    voice = parse_voice("Рубцов", double.voices)            # {"Семён Рубцов": 1.0}
    voice = parse_voice("Ключарёва=0.7,Рубцов=0.3", ...)     # a mix
    ids = voiced_ids(double, prompt_ids, voice, max_new)     # the marker first, the prompt cut to fit
    with speaking(double, voice):                            # a mix: the markers' embeddings interpolated
        model.generate(ids, ...)

A mix is one marker position whose embedding is the weighted mean of the voices' marker
embeddings. The other way, weighted logits of one conditioned pass per voice, was
measured against it (`benchmarks/voice_mix.py`, docs/voices.md): see there why this one
is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from dvoinik.generation.decoding import GenerationError

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
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.rpartition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or weight != weight or weight < 0 or weight == float("inf"):
            raise GenerationError(f"--voice {item!r}: expected NAME=WEIGHT with a weight of 0 or more, "
                                  "e.g. --voice A=0.7,B=0.3")
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
    training blocks start with the marker and then text. A mix is marked with its first
    voice's id; `speaking` replaces that position's embedding.
    """
    import torch

    first = voices[next(iter(voice))]
    if ids.shape[1] == 1 and eos_id is not None and int(ids[0, 0]) == eos_id:
        ids = ids[:, :0]
    if budget and ids.shape[1] > 1 and ids.shape[1] + 1 + max_new_tokens > budget:
        ids = ids[:, 1:]
    return torch.cat([torch.full((ids.shape[0], 1), first, dtype=ids.dtype), ids], dim=1)


def mixed_marker_embedding(model: Any, voices: dict[str, int], voice: Voice) -> Any:
    """The weighted mean of the voices' marker embeddings.

    Read through the embedding layer itself, so a LoRA run's trained marker rows (PEFT
    keeps them beside the base's) are the ones mixed.
    """
    import torch

    layer = model.get_input_embeddings()
    device = next(model.parameters()).device
    rows = layer(torch.tensor([[voices[name] for name in voice]], device=device))[0]
    weights = rows.new_tensor([voice[name] for name in voice]).unsqueeze(1)
    return (rows.float() * weights.float()).sum(dim=0)


@contextmanager
def _interpolated(model: Any, placeholder: int, vector: Any) -> Iterator[None]:
    """While inside, every embedded `placeholder` token becomes `vector` (only the prefill sees a marker)."""
    def replace(module: Any, inputs: tuple, output: Any) -> Any:
        ids = inputs[0] if inputs else None
        if ids is None or not hasattr(ids, "eq"):
            return output
        where = ids.eq(placeholder)
        if not bool(where.any()):
            return output
        output = output.clone()
        output[where] = vector.to(output.dtype)
        return output

    handle = model.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def speaking(model: Any, voices: dict[str, int], voice: Voice | None) -> Any:
    """A context in which the model reads the marker of a mixed `voice` as the mix (nothing to do for one voice)."""
    if not voice or len(voice) == 1:
        return nullcontext()
    import torch

    with torch.no_grad():
        vector = mixed_marker_embedding(model, voices, voice)
    return _interpolated(model, voices[next(iter(voice))], vector)
