"""A machine blind test: can a classifier tell the author's real continuations from the double's?

For each checkpoint, every evaluation prompt (cut from the target's held-out works) has
two continuations: what the author wrote and what the double wrote. Each pair is cut to
the shorter one's length in tokens, so length gives nothing away. Two readers are
trained and scored by cross-validation, folds grouped by prompt (a prompt's two texts
are always on the same side, so a reader cannot learn the prompt's subject):

- **n-grams**: TF-IDF of character 1–3-grams and words, logistic regression: the
  surface (spelling, punctuation, favourite words, repetition);
- **surprisal**: how the checkpoint itself scores each token (mean, spread and quantiles
  of −log p, the share of tokens that were its first or top-10 choice; Gehrmann et al.
  2019, GLTR), logistic regression on those eight numbers: sampled text is likelier
  under its own model than the author's is.

The accuracy over all texts, with a 95% Wilson interval: 50% means this reader cannot
tell the double from the author; 100% means it always can. With 24 prompts (48 texts)
the interval is about ±14 points, so read differences between checkpoints with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dvoinik.intervals import wilson_interval

FOLDS = 5
SURPRISAL_FEATURES = ("mean", "std", "p10", "median", "p90", "max", "top1", "top10")
BATCH = 16


@dataclass(frozen=True)
class BlindTest:
    """One reader's cross-validated accuracy at telling real from generated continuations."""

    reader: str  # "n-grams" | "surprisal"
    accuracy: float | None  # None: too few pairs to cross-validate
    low: float | None  # 95% Wilson interval of the accuracy
    high: float | None
    texts: int  # real + generated texts scored
    folds: int


def equal_pairs(real: Sequence[Sequence[int]], generated: Sequence[Sequence[int]]) -> list[tuple[list[int], list[int]]]:
    """Each (real, generated) pair of token lists cut to the shorter one's length; pairs with an empty side dropped."""
    pairs = []
    for r, g in zip(real, generated):
        n = min(len(r), len(g))
        if n > 0:
            pairs.append((list(r[:n]), list(g[:n])))
    return pairs


def cross_validated(features: Any, labels: np.ndarray, groups: np.ndarray, make_model: Any, reader: str,
                    folds: int = FOLDS) -> BlindTest:
    """Accuracy of `make_model()` predicting `labels`, by grouped k-fold cross-validation."""
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < 2 or len(np.unique(labels)) < 2:
        return BlindTest(reader, None, None, None, len(labels), 0)
    k = min(folds, n_groups)
    predicted = np.zeros(len(labels), dtype=labels.dtype)
    for train, test in GroupKFold(n_splits=k).split(features, labels, groups):
        model = make_model().fit(_rows(features, train), labels[train])
        predicted[test] = model.predict(_rows(features, test))
    right = int((predicted == labels).sum())
    low, high = wilson_interval(right, len(labels))
    return BlindTest(reader, right / len(labels), low, high, len(labels), k)


def _rows(features: Any, index: np.ndarray) -> Any:
    return [features[i] for i in index] if isinstance(features, list) else features[index]


def ngram_blind_test(real: Sequence[str], generated: Sequence[str], folds: int = FOLDS) -> BlindTest:
    """The n-gram reader on pairs of texts (real[i] and generated[i] continue the same prompt)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    texts = list(real) + list(generated)
    labels = np.array([0] * len(real) + [1] * len(generated))
    groups = np.concatenate([np.arange(len(real)), np.arange(len(generated))])

    def make_model() -> Any:
        features = make_union(
            TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, lowercase=False),
            TfidfVectorizer(analyzer="word", token_pattern=r"(?u)\b\w+\b", sublinear_tf=True),
        )
        return make_pipeline(features, LogisticRegression(C=1.0, max_iter=1000))

    return cross_validated(texts, labels, groups, make_model, "n-grams", folds)


def surprisal_blind_test(real: np.ndarray, generated: np.ndarray, folds: int = FOLDS) -> BlindTest:
    """The surprisal reader on per-text statistics (`token_statistics` rows; real[i] and generated[i] share a prompt)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = np.vstack([real, generated]) if len(real) else np.zeros((0, len(SURPRISAL_FEATURES)))
    labels = np.array([0] * len(real) + [1] * len(generated))
    groups = np.concatenate([np.arange(len(real)), np.arange(len(generated))])
    return cross_validated(features, labels, groups,
                           lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)),
                           "surprisal", folds)


def token_statistics(model: Any, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]) -> np.ndarray:
    """Per continuation, SURPRISAL_FEATURES of its tokens under `model`, each given its prompt and what came before."""
    import torch

    device = next(model.parameters()).device
    rows = []
    for first in range(0, len(prompts), BATCH):
        batch = [list(p) + list(c) for p, c in zip(prompts[first : first + BATCH], continuations[first : first + BATCH])]
        width = max(len(ids) for ids in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        log_p = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:].to(device)
        chosen = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        rank = (log_p > chosen.unsqueeze(-1)).sum(dim=-1)  # 0 = the model's first choice
        for row, (prompt, continuation) in enumerate(zip(prompts[first : first + BATCH],
                                                         continuations[first : first + BATCH])):
            start, end = len(prompt) - 1, len(prompt) - 1 + len(continuation)
            rows.append(_statistics(-chosen[row, start:end].cpu().numpy(), rank[row, start:end].cpu().numpy()))
    return np.array(rows).reshape(len(rows), len(SURPRISAL_FEATURES))


def _statistics(surprisal: np.ndarray, rank: np.ndarray) -> list[float]:
    if len(surprisal) == 0:
        return [0.0] * len(SURPRISAL_FEATURES)
    return [float(surprisal.mean()), float(surprisal.std()), float(np.percentile(surprisal, 10)),
            float(np.median(surprisal)), float(np.percentile(surprisal, 90)), float(surprisal.max()),
            float((rank == 0).mean()), float((rank < 10).mean())]


def blind_tests(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], real: Sequence[Sequence[int]],
                generated: Sequence[Sequence[int]], folds: int = FOLDS) -> dict:
    """Both readers on one checkpoint's continuations, as report.json holds them."""
    kept = [(p, pair) for p, r, g in zip(prompts, real, generated) for pair in equal_pairs([r], [g])]
    pairs = [pair for _, pair in kept]
    prompt_ids = [list(p) for p, _ in kept]
    real_texts = [tokenizer.decode(r, skip_special_tokens=True) for r, _ in pairs]
    fake_texts = [tokenizer.decode(g, skip_special_tokens=True) for _, g in pairs]
    ngrams = ngram_blind_test(real_texts, fake_texts, folds)
    if pairs:
        stats_real = token_statistics(model, prompt_ids, [r for r, _ in pairs])
        stats_fake = token_statistics(model, prompt_ids, [g for _, g in pairs])
    else:
        stats_real = stats_fake = np.zeros((0, len(SURPRISAL_FEATURES)))
    surprisal = surprisal_blind_test(stats_real, stats_fake, folds)
    return {"pairs": len(pairs), "dropped_pairs": len(prompts) - len(pairs),
            "mean_tokens": float(np.mean([len(r) for r, _ in pairs])) if pairs else 0.0,
            "ngrams": _as_dict(ngrams), "surprisal": _as_dict(surprisal),
            "mean_surprisal": {"real": float(stats_real[:, 0].mean()) if len(stats_real) else None,
                               "generated": float(stats_fake[:, 0].mean()) if len(stats_fake) else None}}


def _as_dict(test: BlindTest) -> dict:
    return {"accuracy": test.accuracy, "low": test.low, "high": test.high, "texts": test.texts, "folds": test.folds}
