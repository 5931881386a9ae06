from __future__ import annotations

import pytest

from dvoinik.evaluation.recommendation import mcnemar_p, recommend, recommendation_rule, share_intervals
from dvoinik.workspace import EvaluateSettings

TARGET = "Автор"


def _checkpoint(name: str, read: list[bool], ppl: float | None, copied: float = 0.0, exact: float | None = 0.0) -> dict:
    authors = [TARGET if r else "Другой" for r in read]
    counts: dict[str, int] = {}
    for a in authors:
        counts[a] = counts.get(a, 0) + 1
    return {"name": name, "val_target_ppl": ppl,
            "samples": {"target_share": sum(read) / len(read), "share_with_copied_span": copied, "attributed": counts,
                        "authors": authors, "longest_spans": [3] * len(read)},
            "extraction": {"exact_share": exact, "prompts": 32 if exact is not None else 0}}


def test_mcnemar_counts_only_the_discordant_pairs() -> None:
    same = [True, False, True]
    assert mcnemar_p(same, same) == 1.0
    assert mcnemar_p([True] * 11, [True] * 10 + [False]) == 1.0  # one discordant pair: p = 1
    assert mcnemar_p([True] * 10, [False] * 10) == pytest.approx(2 / 2**10)
    # 8 discordant pairs all one way: p = 2 / 256
    assert mcnemar_p([True] * 8 + [False] * 4, [False] * 8 + [False] * 4) == pytest.approx(2 / 256)


def test_a_one_sample_difference_does_not_outweigh_perplexity() -> None:
    """The demo's case from the issue: 11 samples, 10 vs 11 read as the target, ppl 282 vs 427."""
    early = _checkpoint("checkpoint-150", [True] * 10 + [False], 282.0)
    late = _checkpoint("checkpoint-300", [True] * 11, 427.0)
    name, reason = recommend([early, late], EvaluateSettings(), TARGET)
    assert name == "checkpoint-150"
    assert "checkpoint-300" in reason and "McNemar p = 1.00 on the same 11 prompts" in reason
    assert "perplexity 282.0, against 427.0" in reason and "91% [62%–98%] of its samples" in reason


def test_a_real_difference_in_style_still_decides() -> None:
    poor = _checkpoint("early", [True] * 6 + [False] * 18, 50.0)
    good = _checkpoint("late", [True] * 22 + [False] * 2, 90.0)
    name, reason = recommend([poor, good], EvaluateSettings(), TARGET)
    assert name == "late" and "every other checkpoint is worse beyond the noise" in reason


def test_copying_limits_come_first_and_ties_go_to_perplexity() -> None:
    read = [True] * 7 + [False] * 3
    checkpoints = [_checkpoint("a", read, 60.0), _checkpoint("b", read, 50.0),
                   _checkpoint("copies", [True] * 10, 20.0, copied=0.2), _checkpoint("extracts", [True] * 10, 10.0, exact=0.5)]
    name, reason = recommend(checkpoints, EvaluateSettings(), TARGET)
    assert name == "b" and "2 of 4 checkpoints pass the copying limits" in reason
    assert recommend([checkpoints[2]], EvaluateSettings(), TARGET)[0] is None
    # Without style (one author): the lowest perplexity among those that pass.
    unstyled = [dict(c, samples={**c["samples"], "target_share": None}) for c in checkpoints]
    assert recommend(unstyled, EvaluateSettings(), TARGET)[0] == "b"


def test_reports_without_per_sample_outcomes_use_the_interval() -> None:
    early = _checkpoint("early", [True] * 10 + [False], 282.0)
    late = _checkpoint("late", [True] * 11, 427.0)
    for c in (early, late):
        del c["samples"]["authors"]
    name, reason = recommend([early, late], EvaluateSettings(), TARGET)
    assert name == "early" and "their 95% intervals overlap" in reason


def test_every_share_has_a_wilson_interval() -> None:
    c = _checkpoint("x", [True] * 10 + [False], 100.0, copied=0.0, exact=0.0)
    intervals = share_intervals(c)
    low, high = intervals["target_share"]
    assert low == pytest.approx(0.6226, abs=1e-3) and high == pytest.approx(0.9838, abs=1e-3)
    assert intervals["share_with_copied_span"][0] == 0.0 and 0.2 < intervals["share_with_copied_span"][1] < 0.3
    assert intervals["extraction_exact_share"][1] == pytest.approx(0.1072, abs=1e-3)  # 0 of 32
    assert "not worse than the best one's beyond the noise" in recommendation_rule(EvaluateSettings(), 50)
