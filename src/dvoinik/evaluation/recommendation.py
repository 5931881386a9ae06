"""Which checkpoint to recommend, with the noise of a few dozen samples taken into account.

Every share in the report is a count out of a few dozen samples or prompts, so each gets
a 95% Wilson interval. The rule:

1. a checkpoint must pass the copying limits (its samples' copied spans and its
   extraction audit, as `[evaluate]` sets them);
2. of those, the best style is the highest share of samples read as the target; every
   checkpoint whose share is not worse than that beyond the noise stays in the running:
   an exact McNemar test on the same prompts (the checkpoints continue the same prompts
   with the same seeds, so their samples are pairs), p ≥ 0.05;
3. of those, the lowest held-out perplexity of the target wins.

A one-sample difference in style then cannot outweigh a large difference in perplexity,
while a real difference in style still decides.
"""

from __future__ import annotations

import math
from typing import Any

from dvoinik.intervals import wilson_interval
from dvoinik.workspace import EvaluateSettings

SIGNIFICANCE = 0.05


def mcnemar_p(first: list[bool], second: list[bool]) -> float:
    """Two-sided exact McNemar test: how likely so lopsided a split of the discordant pairs is by chance."""
    only_first = sum(a and not b for a, b in zip(first, second))
    only_second = sum(b and not a for a, b in zip(first, second))
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def passes_copying_limits(checkpoint: dict, settings: EvaluateSettings) -> bool:
    exact = checkpoint["extraction"]["exact_share"]
    return checkpoint["samples"]["share_with_copied_span"] <= settings.max_target_copy_share and \
        (exact is None or exact <= settings.max_extraction_share)


def _read_as_target(checkpoint: dict, target: str | None) -> list[bool] | None:
    authors = checkpoint["samples"].get("authors")
    return None if authors is None or target is None else [a == target for a in authors]


def _samples(checkpoint: dict) -> int:
    return sum(checkpoint["samples"].get("attributed", {}).values())


def share_intervals(checkpoint: dict) -> dict[str, list[float | None]]:
    """95% Wilson intervals of the checkpoint's shares: read as the target, samples with a copied span, extraction."""
    samples = checkpoint["samples"]
    count = len(samples.get("longest_spans", [])) or _samples(checkpoint)
    out: dict[str, list[float | None]] = {}
    if samples.get("target_share") is not None and count:
        out["target_share"] = list(wilson_interval(round(samples["target_share"] * count), count))
    if count:
        out["share_with_copied_span"] = list(wilson_interval(round(samples["share_with_copied_span"] * count), count))
    extraction = checkpoint["extraction"]
    if extraction.get("exact_share") is not None and extraction.get("prompts"):
        prompts = extraction["prompts"]
        out["extraction_exact_share"] = list(wilson_interval(round(extraction["exact_share"] * prompts), prompts))
    return out


def recommendation_rule(settings: EvaluateSettings, min_tokens: int, min_words: int | None = None) -> str:
    span, exactly = (f"{min_words}+ words", "word for word") if min_words else (f"{min_tokens}+ tokens", "exactly")
    return (f"Among checkpoints whose samples hold a copied span of {span} in at most "
            f"{settings.max_target_copy_share:.0%} of cases and whose extraction audit reproduces at most "
            f"{settings.max_extraction_share:.0%} of prompts {exactly}, those whose share of samples read as the target "
            f"author is not worse than the best one's beyond the noise (exact McNemar test on the same prompts, "
            f"p ≥ {SIGNIFICANCE}); of those, the one with the lowest held-out perplexity of the target.")


def recommend(checkpoints: list[dict], settings: EvaluateSettings, target: str | None = None) -> tuple[str | None, str]:
    """The recommended checkpoint's name (None when none passes the copying limits) and why, in words."""
    eligible = [c for c in checkpoints if passes_copying_limits(c, settings)]
    if not eligible:
        return None, "no checkpoint passes the copying limits: every one copies the training texts"
    passing = f"{len(eligible)} of {len(checkpoints)} checkpoints pass the copying limits"

    def ppl(c: dict) -> float:
        value = c.get("val_target_ppl")
        return value if value is not None else float("inf")

    measured = [c for c in eligible if c["samples"]["target_share"] is not None]
    if not measured:
        best = min(eligible, key=ppl)
        return best["name"], f"style not measured; the lowest held-out perplexity ({_ppl(best)}); {passing}"
    top = min(measured, key=lambda c: (-c["samples"]["target_share"], ppl(c)))
    close = [c for c in measured if c is top or _within_noise(c, top, target)]
    chosen = min(close, key=ppl)
    style = _share_text(chosen)
    if chosen is top:
        why = f"{style} read as the target, the most of any"
        if len(close) > 1:
            why += f"; the lowest held-out perplexity ({_ppl(chosen)}) of the {len(close)} checkpoints within the noise of it"
        elif len(measured) > 1:
            why += "; every other checkpoint is worse beyond the noise"
    else:
        why = (f"{style} read as the target, not worse beyond the noise than the best, {top['name']} with "
               f"{_share_text(top)} ({_test_text(chosen, top, target)}); the lowest held-out perplexity of the "
               f"{len(close)} checkpoints within the noise ({_ppl(chosen)}, against {top['val_target_ppl']:.1f})"
               if top.get("val_target_ppl") is not None else f"{len(close)} checkpoints within the noise ({_ppl(chosen)})")
    return chosen["name"], f"{why}; {passing}"


def _within_noise(candidate: dict, best: dict, target: str | None) -> bool:
    mine, theirs = _read_as_target(candidate, target), _read_as_target(best, target)
    if mine is not None and theirs is not None and len(mine) == len(theirs):
        return mcnemar_p(mine, theirs) >= SIGNIFICANCE
    # Without per-sample outcomes (an older report): the two 95% intervals overlap.
    _, high = _interval(candidate)
    low, _ = _interval(best)
    return high >= low


def _interval(c: dict) -> tuple[float, float]:
    n = _samples(c)
    share = c["samples"]["target_share"]
    low, high = wilson_interval(round(share * n), n) if n else (None, None)
    return (low, high) if low is not None and high is not None else (share, share)


def _share_text(c: dict) -> str:
    share = c["samples"]["target_share"]
    n = _samples(c)
    low, high = wilson_interval(round(share * n), n) if n else (None, None)
    interval = f" [{low:.0%}–{high:.0%}]" if low is not None and high is not None else ""
    return f"{share:.0%}{interval} of its samples" if n else f"{share:.0%} of its samples"


def _test_text(candidate: dict, best: dict, target: str | None) -> str:
    mine, theirs = _read_as_target(candidate, target), _read_as_target(best, target)
    if mine is not None and theirs is not None and len(mine) == len(theirs):
        return f"McNemar p = {mcnemar_p(mine, theirs):.2f} on the same {len(mine)} prompts"
    return "their 95% intervals overlap"


def _ppl(c: dict) -> str:
    value: Any = c.get("val_target_ppl")
    return f"perplexity {value:.1f}" if value is not None else "perplexity not measured"
