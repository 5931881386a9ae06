"""The originality guard: a logits processor that never lets the model complete an N-gram of its training texts."""

from __future__ import annotations

from typing import Any

from dvoinik.generation.copyindex import CopyIndex


def originality_guard(index: CopyIndex, n: int, eos_id: int | None) -> Any:
    """A transformers LogitsProcessor that bans every token completing an `n`-gram of the training texts.

    The n-gram is read over the prompt and what has been generated, so a continuation of a
    quoted passage cannot copy on either. End of text is never banned (it copies nothing).
    The lookup (`banned`, on the CPU) and the ban (`ban`, where the scores are) are separate,
    so the static-cache loop of generation/fast.py looks up the next step's bans while the
    GPU computes its logits.
    """
    import numpy as np
    import torch
    from transformers import LogitsProcessor

    class OriginalityGuard(LogitsProcessor):
        context = n - 1  # tokens a lookup reads

        def banned(self, contexts: np.ndarray) -> list[np.ndarray]:
            """For each row of the last n-1 tokens, the tokens that would complete an n-gram of the training texts."""
            keep = eos_id if eos_id is not None else -1
            return [found[found != keep] for found in index.successors(contexts)]

        def ban(self, scores: torch.FloatTensor, banned: list[np.ndarray]) -> torch.FloatTensor:
            rows = np.concatenate([np.full(len(b), row, dtype=np.int64) for row, b in enumerate(banned)] or [[]])
            columns = np.concatenate(banned or [[]]).astype(np.int64)
            inside = columns < scores.shape[1]
            if inside.any():  # one indexed write for every row (most steps ban nothing at all)
                where = torch.from_numpy(np.stack([rows[inside], columns[inside]])).to(scores.device)
                scores[where[0], where[1]] = -float("inf")
            return scores

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if input_ids.shape[1] < n - 1:
                return scores
            return self.ban(scores, self.banned(input_ids[:, input_ids.shape[1] - (n - 1):].cpu().numpy()))

    return OriginalityGuard()
