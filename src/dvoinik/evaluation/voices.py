"""The attribution matrix of a run with voices: does each voice read like its own author?

For each voice, samples continue the same prompts (taken evenly from every author's
held-out works, so no author's prompts favour their own voice) with that voice's marker;
the stylometry model (`evaluation/stylometry.py`) names the author each sample reads
like. A row is a voice, a column an author, a cell the share of the voice's samples
given to that author. Beside it, the same matrix for real held-out text (each author's
real continuations of the same prompts) says how far short samples can be attributed at
all: the diagonal there is the ceiling of what the markers can achieve.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dvoinik.evaluation.stylometry import StyleModel, attribute_many
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double
from dvoinik.generation.variants import sample_ids
from dvoinik.generation.voices import Voice, describe, sample_mixed
from dvoinik.tokens import TokenSet

NO_WORDS = "(no words)"  # a sample without a word is attributed to no one
_WORDS = re.compile(r"\w+")

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class VoicePassage:
    """A prompt from one author's held-out work and that author's real continuation."""

    author: str
    prompt: list[int]
    continuation: list[int]


@dataclass(frozen=True)
class AttributionMatrix:
    """Rows (voices, or the real authors) × columns (authors): the share of each row's texts given to each author."""

    authors: list[str]  # columns
    rows: dict[str, dict[str, float]]
    samples: dict[str, int]  # texts per row

    def share(self, row: str, author: str) -> float:
        return self.rows.get(row, {}).get(author, 0.0)

    def to_json(self) -> dict:
        return asdict(self)


def voice_passages(token_set: TokenSet, per_author: int, prompt_len: int, continuation_len: int,
                   starts_word: np.ndarray | None = None) -> list[VoicePassage]:
    """Up to `per_author` passages from each author's held-out works, authors in the token set's order."""
    from dvoinik.evaluation.evaluate import passages

    out: list[VoicePassage] = []
    for author in token_set.authors:
        documents = [(d.start, d.tokens, d.title) for d in token_set.documents
                     if d.author == author.name and d.split == "val"]
        if not documents:
            continue
        found = passages(token_set.open("val", author), documents, per_author, prompt_len, continuation_len, starts_word)
        out += [VoicePassage(author.name, p.prompt, p.continuation) for p in found]
    return out


def attribution_shares(style: StyleModel, texts: list[str]) -> dict[str, float]:
    """author → share of `texts` attributed to them (texts without a word count under NO_WORDS)."""
    if not texts:
        return {}
    worded = [t for t in texts if _WORDS.search(t)]
    counts: dict[str, int] = {}
    for result in attribute_many(style, worded) if worded else []:  # the nearest author, not the open-set answer
        counts[result.best.author] = counts.get(result.best.author, 0) + 1
    if len(worded) < len(texts):
        counts[NO_WORDS] = len(texts) - len(worded)
    return {author: count / len(texts) for author, count in counts.items()}


def samples_in_voice(double: Double, prompts: list[list[int]], voice: Voice, preset: str, new_tokens: int,
                     seed: int, batch_size: int = 16) -> list[str]:
    """Continuations of equal-length `prompts` in `voice`, in batches with one seed per batch (so runs repeat)."""
    import torch

    texts: list[str] = []
    marker = double.voices[next(iter(voice))]
    for first in range(0, len(prompts), batch_size):
        batch = torch.tensor(prompts[first : first + batch_size])
        decoding = decoding_for(preset, max_new_tokens=new_tokens, seed=seed + first)
        if len(voice) > 1:  # a mix: one pass per voice, their logits weighted
            rows = sample_mixed(double, batch, voice, decoding)
        else:
            rows = sample_ids(double, torch.cat([torch.full((len(batch), 1), marker), batch], dim=1), decoding)
        texts += [double.tokenizer.decode(ids, skip_special_tokens=True) for ids in rows]
    return texts


def voice_matrices(double: Double, style: StyleModel, passages: list[VoicePassage], preset: str, new_tokens: int,
                   seed: int, voices: list[Voice] | None = None,
                   on_progress: ProgressCallback | None = None) -> tuple[AttributionMatrix, AttributionMatrix]:
    """(the voices' matrix, the real text's matrix) on the same prompts; `voices` default to each single voice.

    Mixed voices may be given too (the row is named "A=0.7+B=0.3"); the real matrix has one
    row per author with held-out text.
    """
    voices = voices or [{name: 1.0} for name in double.voices]
    prompts = [p.prompt for p in passages]
    rows: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for voice in voices:
        name = describe(voice)
        if on_progress:
            on_progress(f"voice {name}")
        texts = samples_in_voice(double, prompts, voice, preset, new_tokens, seed)
        rows[name], counts[name] = attribution_shares(style, texts), len(texts)
    real_rows: dict[str, dict[str, float]] = {}
    real_counts: dict[str, int] = {}
    for author in dict.fromkeys(p.author for p in passages):
        texts = [double.tokenizer.decode(p.continuation) for p in passages if p.author == author]
        real_rows[author], real_counts[author] = attribution_shares(style, texts), len(texts)
    columns = list(style.authors)
    return AttributionMatrix(columns, rows, counts), AttributionMatrix(columns, real_rows, real_counts)


def matrix_rows(matrix: AttributionMatrix) -> list[list[str]]:
    """The matrix as table rows of percentages (row name first), for the terminal and the HTML report."""
    return [[name] + [f"{shares.get(a, 0.0):.0%}" for a in matrix.authors] for name, shares in matrix.rows.items()]


def voiced_prompt_rows(double: Double, prompts: Any) -> Any:
    """Equal-length prompt rows with the default voice's marker in front (a run without voices: unchanged)."""
    import torch

    if not double.voices:
        return prompts
    marker = next(iter(double.voices.values()))
    return torch.cat([torch.full((prompts.shape[0], 1), marker, dtype=prompts.dtype), prompts], dim=1)
