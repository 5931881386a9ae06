"""The originality guard: a logits processor that never lets the model complete an N-gram of its training texts."""

from __future__ import annotations

from typing import Any

from dvoinik.generation.copyindex import CopyIndex


def originality_guard(index: CopyIndex, n: int, eos_id: int | None) -> Any:
    """A transformers LogitsProcessor that bans every token completing an `n`-gram of the training texts.

    The n-gram is read over the prompt and what has been generated, so a continuation of a
    quoted passage cannot copy on either. End of text is never banned (it copies nothing).
    """
    import torch
    from transformers import LogitsProcessor

    class OriginalityGuard(LogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if input_ids.shape[1] < n - 1:
                return scores
            contexts = input_ids[:, input_ids.shape[1] - (n - 1):].cpu().numpy()
            for row, banned in enumerate(index.successors(contexts)):
                banned = banned[(banned < scores.shape[1]) & (banned != (eos_id if eos_id is not None else -1))]
                if len(banned):
                    scores[row, torch.from_numpy(banned).to(scores.device)] = -float("inf")
            return scores

    return OriginalityGuard()
