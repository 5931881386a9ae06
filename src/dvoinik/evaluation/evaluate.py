"""`dvoinik evaluate`: measure every checkpoint of a run and recommend one.

For each checkpoint, on the same prompts and seeds:

- perplexity on the target author's and the influences' held-out works;
- style: samples continuing prompts from the target's held-out works, attributed among the
  corpus's authors (stylometry.py); the real continuations of the same prompts, measured the
  same way, are the ceiling;
- copying: the longest span of each sample found in the training texts, the share of samples
  with a span of `[check] min_words`, and the share of novel n-grams for n = 1…20, beside the
  same curve for the real held-out continuations — all in normalised words (the word index,
  as `check` and the copy scores count), with the longest span in tokens kept beside them;
- extraction: 64-token prompts from the target's training works, continued greedily for 64
  tokens: how many reproduce the book word for word (and token for token), and the mean
  longest copied span;
- diversity: distinct-1/2/3 over all samples and repetition inside each sample;
- a machine blind test (discriminator.py): cross-validated readers telling the real
  continuations from the samples, on n-grams and on the checkpoint's own surprisal.

Every share carries a 95% interval, and the recommendation (recommendation.py) respects
them: among checkpoints that pass the copying limits, those not worse on style than the
best beyond the noise, then the lowest held-out perplexity. The run's `evaluation/` folder
(report.json, report.html, plots) is written under a temporary name and swapped in whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dvoinik.atomic import building_folder
from dvoinik.evaluation.discriminator import blind_tests
from dvoinik.evaluation.recommendation import recommend, recommendation_rule, share_intervals
from dvoinik.evaluation.stylometry import (
    NONE_OF_THEM,
    StyleError,
    StyleModel,
    attribute_many,
    attributed_author,
    load_or_fit_workspace_model,
)
from dvoinik.evaluation.voices import voice_matrices, voice_passages, voiced_prompt_rows
from dvoinik.faults import DamagedFileError
from dvoinik.generation.copyindex import CopyIndex, open_copy_index
from dvoinik.generation.decoding import decoding_for
from dvoinik.generation.double import Double, load_checkpoint
from dvoinik.generation.variants import sample_ids
from dvoinik.generation.wordindex import WordIndex, open_word_index
from dvoinik.generation.words import normalise_words
from dvoinik.runs import EVALUATION_DIR, REPORT_JSON, Run, find_run, run_token_set
from dvoinik.tokens import TokenSet
from dvoinik.training.checkpoints import Checkpoint, list_checkpoints
from dvoinik.training.data import validation_blocks
from dvoinik.training.loop import next_token_loss
from dvoinik.training.metrics import perplexity
from dvoinik.workspace import EvaluateSettings, Workspace

EXTRACTION_TOKENS = 64  # prompt and continuation length of the extraction audit (the usual setup)
NOVELTY_N = tuple(range(1, 21))
DISTINCT_N = (1, 2, 3)
REPETITION_N = 3  # a word trigram met earlier in the same text counts as repetition
SAMPLES_SHOWN = 3
NO_WORDS = "(no words)"  # how `attributed` counts samples with nothing to attribute
_WORDS = re.compile(r"\w+")


class EvaluationError(Exception):
    """A user-facing problem with the evaluation (one line)."""


ProgressCallback = Callable[[str, int, int], None]  # (what, done, total) over checkpoints


# ---------------------------------------------------------------- the fixed material


@dataclass(frozen=True)
class Passage:
    """A prompt cut from a real text and the real tokens that follow it."""

    prompt: list[int]
    continuation: list[int]
    work: str


def passages(tokens: np.ndarray, documents: list[tuple[int, int, str]], count: int, prompt_len: int,
             continuation_len: int, starts_word: np.ndarray | None = None) -> list[Passage]:
    """Up to `count` passages spread evenly over the documents (start, length, title) inside `tokens`.

    A passage never crosses a document's end, so every prompt is one work's text; with
    `starts_word` (a flag per token id) it begins on a token that starts a word.
    """
    need = prompt_len + continuation_len
    starts: list[tuple[int, int, str]] = []  # (position, end of its document, title)
    for start, length, title in documents:
        usable = length - 1 - need  # the last token is the EOS
        starts += [(start + offset, start + length - 1, title) for offset in range(0, usable + 1, max(1, need // 2))]
    if not starts or count == 0:
        return []
    chosen = np.linspace(0, len(starts) - 1, num=min(count, len(starts))).round().astype(int)
    out = []
    for i in dict.fromkeys(chosen.tolist()):
        start, end, title = starts[i]
        if starts_word is not None:
            ahead = np.asarray(tokens[start : min(start + 16, end - need)])
            found = np.flatnonzero(starts_word[ahead])
            start += int(found[0]) if len(found) else 0
        window = np.asarray(tokens[start : start + need]).tolist()
        out.append(Passage(window[:prompt_len], window[prompt_len:], title))
    return out


def word_starts(tokenizer: Any) -> np.ndarray:
    """For each token id, whether its text begins with whitespace (a word or line starts there).

    Each token is decoded after an anchor token: SentencePiece-style tokenizers drop the
    space of a text's first token, so a token alone would never show it.
    """
    anchor = tokenizer("a", add_special_tokens=False).input_ids[:1] or [0]
    skip = len(tokenizer.decode(anchor))
    texts = tokenizer.batch_decode([anchor + [token_id] for token_id in range(len(tokenizer))])
    return np.array([len(text) > skip and text[skip].isspace() for text in texts], dtype=bool)


def target_passages(token_set: TokenSet, split: str, count: int, prompt_len: int, continuation_len: int,
                    starts_word: np.ndarray | None = None) -> list[Passage]:
    target = token_set.target
    if target is None:
        return []
    documents = [(d.start, d.tokens, d.title) for d in token_set.documents if d.author == target.name and d.split == split]
    return passages(token_set.open(split, target), documents, count, prompt_len, continuation_len, starts_word)


# ---------------------------------------------------------------- measures


def novel_ngram_shares(stats: list[np.ndarray], ns: tuple[int, ...] = NOVELTY_N) -> dict[int, float | None]:
    """Share of the texts' n-grams that never occur in the training texts, pooled, from their matching statistics.

    The n-gram starting at i occurs exactly when the longest match starting at i is at least n long.
    """
    shares: dict[int, float | None] = {}
    for n in ns:
        novel = total = 0
        for lengths in stats:
            count = len(lengths) - n + 1
            if count > 0:  # a text shorter than n adds no n-gram
                novel += int(np.sum(lengths[:count] < n))
                total += count
        shares[n] = novel / total if total else None
    return shares


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams over all n-grams, pooled over `texts` (Li et al. 2016)."""
    grams = [tuple(words[i : i + n]) for words in map(_words, texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition(text: str, n: int = REPETITION_N) -> float:
    """Share of the word n-grams of `text` already seen earlier in it."""
    words = _words(text)
    seen: set[tuple[str, ...]] = set()
    repeated = total = 0
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        repeated += gram in seen
        total += 1
        seen.add(gram)
    return repeated / total if total else 0.0


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def summarize(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0, "max": 0.0}
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "median": float(np.median(array)), "p90": float(np.percentile(array, 90)),
            "max": float(array.max())}


@dataclass
class TextMeasures:
    """Style, copying and diversity of a set of texts (samples, or the real continuations)."""

    target_share: float | None  # share attributed to the target author (None: texts too short)
    target_probability: float | None  # mean calibrated probability of the target
    attributed: dict[str, int]  # author -> samples attributed to them
    longest_spans: list[int]
    share_with_copied_span: float
    novel_ngrams: dict[int, float | None]
    distinct: dict[int, float]
    repetition: float
    unit: str = "tokens"  # of longest_spans, share_with_copied_span and novel_ngrams: "words" with a word index
    longest_token_spans: list[int] = field(default_factory=list)  # in tokens whatever the unit (the guard's measure)
    authors: list[str] = field(default_factory=list)  # whom each sample was attributed to (per prompt, in order)


def measure_texts(texts: list[str], tokenizer: Any, index: CopyIndex, style: StyleModel | None, target: str,
                  min_tokens: int, words: WordIndex | None = None, min_words: int | None = None) -> TextMeasures:
    """Style, copying and diversity of `texts`; copying in normalised words when `words` (and `min_words`) are given."""
    token_stats = [index.matching_statistics(tokenizer(t, add_special_tokens=False).input_ids)[0] for t in texts]
    longest_tokens = [int(s.max()) if len(s) else 0 for s in token_stats]
    stats, threshold = token_stats, min_tokens
    if words is not None:
        stats, threshold = [words.match(t).lengths for t in texts], min_words or min_tokens
    longest = [int(s.max()) if len(s) else 0 for s in stats]
    target_share = target_probability = None
    attributed: dict[str, int] = {}
    authors: list[str] = []
    if style is not None and texts:
        # A sample without a word (the model ended the text at once) is attributed to no one; one
        # reading like none of the corpus authors is counted as such (NONE_OF_THEM), not as its nearest.
        worded = [t for t in texts if _WORDS.search(t)]
        results = attribute_many(style, worded) if worded else []
        found = iter(results)
        authors = [attributed_author(next(found)) if _WORDS.search(t) else NO_WORDS for t in texts]
        for author in authors:
            attributed[author] = attributed.get(author, 0) + 1
        target_share = attributed.get(target, 0) / len(texts)
        target_probability = float(sum(next((s.probability for s in r.ranking if s.author == target), 0.0)
                                       for r in results) / len(texts))
    return TextMeasures(
        target_share=target_share, target_probability=target_probability, attributed=attributed,
        longest_spans=longest, share_with_copied_span=float(np.mean([x >= threshold for x in longest])) if longest else 0.0,
        novel_ngrams=novel_ngram_shares(stats),
        distinct={n: distinct_n(texts, n) for n in DISTINCT_N},
        repetition=float(np.mean([repetition(t) for t in texts])) if texts else 0.0,
        unit="words" if words is not None else "tokens", longest_token_spans=longest_tokens,
        authors=authors,
    )


def reproduces(generated: str, real: str) -> bool:
    """Whether `generated` begins with the words of `real`, normalised (the last word of `real` may be cut short)."""
    real_words = normalise_words(real).words
    whole = real_words[:-1] if len(real_words) > 1 else real_words
    return normalise_words(generated).words[: len(whole)] == whole


# ---------------------------------------------------------------- one checkpoint


def held_out_perplexity(model: Any, token_set: TokenSet, block_size: int, blocks: int,
                        markers: dict[str, int] | None = None) -> dict[str, float | None]:
    """Perplexity on the target's held-out works and on the influences', on the blocks training measures.

    A run with voices reads each author's blocks after their marker, as it was trained.
    """
    import torch

    device = next(model.parameters()).device
    values: dict[str, float | None] = {}
    groups = {"target": [a for a in token_set.authors if a.role == "target"],
              "influences": [a for a in token_set.authors if a.role != "target"]}
    for group, authors in groups.items():
        loss_sum, count = 0.0, 0
        for author in authors:
            for block in validation_blocks(token_set.open("val", author), block_size, blocks,
                                           markers.get(author.name) if markers else None):
                ids = torch.from_numpy(block).unsqueeze(0).to(device)
                with torch.no_grad():
                    loss_sum += float(next_token_loss(model, ids)) * (ids.shape[1] - 1)
                count += ids.shape[1] - 1
        values[f"val_{group}_ppl"] = perplexity(loss_sum / count) if count else None
    return values


def generate_batched(double: Double, prompts: list[list[int]], preset: str, new_tokens: int, seed: int,
                     batch_size: int = 16) -> list[list[int]]:
    """Continuations of equal-length prompts, in batches, with one seed per batch (so runs repeat).

    A run with voices writes in its target's voice (its marker first).
    """
    import torch

    out: list[list[int]] = []
    for first in range(0, len(prompts), batch_size):
        batch = voiced_prompt_rows(double, torch.tensor(prompts[first : first + batch_size]))
        decoding = decoding_for(preset, max_new_tokens=new_tokens, seed=seed + first)
        out += sample_ids(double, batch, decoding)
    return out


def evaluate_checkpoint(
    checkpoint: Checkpoint, tokenizer: Any, token_set: TokenSet, index: CopyIndex, style: StyleModel | None,
    prompts: list[Passage], extraction: list[Passage], settings: EvaluateSettings, min_tokens: int, block_size: int,
    eval_blocks: int, words: WordIndex | None = None, min_words: int | None = None,
) -> dict:
    double = load_checkpoint(checkpoint.path, index)  # on the GPU when there is one
    result: dict[str, Any] = {"name": checkpoint.path.name, "step": checkpoint.step}
    result.update(held_out_perplexity(double.model, token_set, block_size, eval_blocks, double.voices or None))

    # Lengths come from the passages: evaluate_run fitted them to what the model was trained on.
    samples = generate_batched(double, [p.prompt for p in prompts], settings.preset, len(prompts[0].continuation),
                               settings.seed)
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in samples]
    target = token_set.target.name if token_set.target else ""
    measures = measure_texts(texts, tokenizer, index, style, target, min_tokens, words, min_words)
    result["samples"] = asdict(measures)
    result["samples"]["longest_span"] = summarize(measures.longest_spans)
    result["samples"]["longest_token_span"] = summarize(measures.longest_token_spans)
    shown = np.linspace(0, len(prompts) - 1, num=min(SAMPLES_SHOWN, len(prompts))).round().astype(int)
    result["examples"] = [
        {"prompt": tokenizer.decode(prompts[i].prompt), "text": texts[i], "real": tokenizer.decode(prompts[i].continuation),
         "work": prompts[i].work, "longest_span": measures.longest_spans[i]}
        for i in dict.fromkeys(shown.tolist())
    ]

    if extraction:
        length = len(extraction[0].continuation)
        greedy = generate_batched(double, [p.prompt for p in extraction], "greedy", length, settings.seed)
        token_exact = [ids[:length] == p.continuation for ids, p in zip(greedy, extraction)]
        token_spans = [int(index.matching_statistics(ids)[0].max()) if ids else 0 for ids in greedy]
        exact, spans = token_exact, token_spans
        if words is not None:  # word for word, however the model spelt the tokens
            written = [tokenizer.decode(ids[:length], skip_special_tokens=True) for ids in greedy]
            exact = [reproduces(text, tokenizer.decode(p.continuation)) for text, p in zip(written, extraction)]
            spans = [words.match(text).longest for text in written]
        result["extraction"] = {"prompts": len(extraction), "exact_share": float(np.mean(exact)),
                                "mean_longest_span": float(np.mean(spans)),
                                "token_exact_share": float(np.mean(token_exact)),
                                "mean_longest_token_span": float(np.mean(token_spans))}
    else:
        result["extraction"] = {"prompts": 0, "exact_share": None, "mean_longest_span": None}
    result["blind_test"] = machine_blind_test(double, prompts, samples)
    result["intervals"] = share_intervals(result)
    return result


def voice_report_of(checkpoint: Checkpoint, index: CopyIndex, style: StyleModel, token_set: TokenSet,
                    starts: np.ndarray, settings: EvaluateSettings, sample_tokens: int) -> dict:
    """The attribution matrix of a run with voices (evaluation/voices.py), beside real held-out text's."""
    double = load_checkpoint(checkpoint.path, index)
    per_author = max(1, settings.prompts // max(1, len(token_set.authors)))
    found = voice_passages(token_set, per_author, settings.prompt_tokens, sample_tokens, starts)
    voices, real = voice_matrices(double, style, found, settings.preset, sample_tokens, settings.seed)
    return {"checkpoint": checkpoint.path.name, "prompts": len(found), "samples": voices.to_json(),
            "real": real.to_json()}


def machine_blind_test(double: Double, prompts: list[Passage], samples: list[list[int]]) -> dict:
    """Can a reader tell the author's continuations from this checkpoint's? (discriminator.py)"""
    return blind_tests(double.model, double.tokenizer, [p.prompt for p in prompts], [p.continuation for p in prompts],
                       samples)


# ---------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class EvaluationResult:
    run: str
    folder: Path  # runs/<run>/evaluation
    report: dict

    @property
    def recommended(self) -> str | None:
        return self.report["recommended"]


def evaluate_run(ws: Workspace, run: str | None = None, on_progress: ProgressCallback | None = None,
                 settings: EvaluateSettings | None = None) -> EvaluationResult:
    """Measure every checkpoint of `run` (default: the latest) and write its evaluation/ folder."""
    from transformers import AutoTokenizer

    from dvoinik.evaluation.report import write_report_files

    settings = settings or ws.evaluate
    chosen: Run = find_run(ws, run)
    checkpoints = list_checkpoints(chosen.folder)
    if not checkpoints:
        raise EvaluationError(f"{chosen.folder}: the run has no complete checkpoint to evaluate")
    token_set = run_token_set(ws, chosen)
    if token_set.target is None or token_set.target.val_tokens == 0:
        raise EvaluationError(f"{ws.corpus_dir}: the target author has no held-out work; evaluation continues "
                              "prompts from held-out works (add more works or lower [corpus] val share)")

    def step(what: str, done: int = 0) -> None:
        if on_progress:
            on_progress(what, done, len(checkpoints))

    tokenizer = AutoTokenizer.from_pretrained(checkpoints[-1].path)
    train_settings = chosen.record.get("settings", {})
    block_size = int(train_settings.get("block_size", ws.train.block_size))
    eval_blocks = int(train_settings.get("eval_blocks", ws.train.eval_blocks))
    # Prompt and sample stay within the positions the model was trained on (a voice's marker takes one).
    voices = bool(chosen.record.get("voices"))
    trained = chosen.trained_length - voices if chosen.trained_length else None
    sample_tokens = min(settings.sample_tokens, trained - settings.prompt_tokens) if trained else settings.sample_tokens
    extraction_tokens = min(EXTRACTION_TOKENS, trained // 2) if trained else EXTRACTION_TOKENS
    if sample_tokens < 8:
        raise EvaluationError(f"[evaluate] prompt_tokens = {settings.prompt_tokens} leaves no room for a sample in the "
                              f"{trained} tokens run {chosen.name!r} was trained on; lower it")

    starts = word_starts(tokenizer)
    prompts = target_passages(token_set, "val", settings.prompts, settings.prompt_tokens, sample_tokens, starts)
    extraction = target_passages(token_set, "train", settings.extraction_prompts, extraction_tokens,
                                 extraction_tokens, starts)
    if not prompts:
        raise EvaluationError(f"{ws.corpus_dir}: the target's held-out works are shorter than one prompt and sample "
                              f"({settings.prompt_tokens} + {sample_tokens} tokens)")

    step("building the copy index")
    index = open_copy_index(token_set)
    words = open_word_index(ws.root, on_progress=lambda message: step(message))
    step("fitting the stylometry model")
    try:
        style: StyleModel | None = load_or_fit_workspace_model(ws)
    except StyleError:
        style = None  # one author: nothing to attribute among; every other measure still holds
    if style is not None:  # short samples are attributed too: the ceiling says how far to trust them
        style = replace(style, settings=replace(style.settings, min_words=1))
    min_tokens, min_words = ws.check.min_tokens, ws.check.min_words
    real_texts = [tokenizer.decode(p.continuation) for p in prompts]
    ceiling = measure_texts(real_texts, tokenizer, index, style, token_set.target.name, min_tokens, words, min_words)

    results, damaged = [], []
    for number, checkpoint in enumerate(checkpoints):
        step(f"evaluating {checkpoint.path.name}", number)
        try:
            results.append(evaluate_checkpoint(checkpoint, tokenizer, token_set, index, style, prompts, extraction,
                                               settings, min_tokens, block_size, eval_blocks, words, min_words))
        except DamagedFileError as exc:  # one damaged checkpoint is named in the report; the others are measured
            damaged.append({"name": checkpoint.path.name, "problem": str(exc)})
            step(f"skipped {checkpoint.path.name}: {exc}", number + 1)
    if not results:
        raise EvaluationError(f"{chosen.folder}: every checkpoint is damaged; the first: {damaged[0]['problem']}")
    recommended, reason = recommend(results, settings, token_set.target.name)
    voice_report = None
    if voices and style is not None:
        measured = [c for c in checkpoints if c.path.name in {r["name"] for r in results}]
        shown = next((c for c in measured if c.path.name == recommended), measured[-1])
        step(f"voices of {shown.path.name}", len(checkpoints))
        voice_report = voice_report_of(shown, index, style, token_set, starts, settings, sample_tokens)
    step("writing the report", len(checkpoints))
    report = {
        "run": chosen.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "min_tokens": min_tokens,
        "min_words": min_words,
        "copy_unit": "words",  # of the copying and extraction figures (tokens kept beside them as longest_token_*)
        "target": token_set.target.name,
        "authors": [a.name for a in token_set.authors],
        "prompts": len(prompts),
        "sample_tokens": sample_tokens,
        "extraction_tokens": extraction_tokens,
        "style_model": {"authors": list(style.authors), "calibration": asdict(style.calibration),
                        "none_of_them": NONE_OF_THEM} if style else None,
        "rule": recommendation_rule(settings, min_tokens, min_words),
        "recommended": recommended,
        "reason": reason,
        "ceiling": {**asdict(ceiling), "longest_span": summarize(ceiling.longest_spans),
                    "longest_token_span": summarize(ceiling.longest_token_spans)},
        "checkpoints": results,
        "damaged_checkpoints": damaged,
        **({"voices": voice_report} if voice_report else {}),
    }
    folder = chosen.folder / EVALUATION_DIR
    with building_folder(folder) as staging:
        (staging / REPORT_JSON).write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
        write_report_files(report, staging)
    return EvaluationResult(chosen.name, folder, report)
