"""Author markers ("voices"): one special token per author, so one model can write in each voice.

A run trained with `[train] voices = true` adds a token `<|voice:NAME|>` for every author
of the corpus to its tokenizer (saved with every checkpoint) and starts every training
block with the marker of the author the block was drawn from. The token files are not
touched: the markers get new ids after the vocabulary, and the sampler puts them in
front of each block. Generation puts the marker (or a mix of markers) first in the
context. The tokenizer is the record: any checkpoint folder says which voices it has.
"""

from __future__ import annotations

import re
from typing import Any

MARKER_PATTERN = re.compile(r"^<\|voice:(.+)\|>$")


def marker(author: str) -> str:
    """The special token that marks `author`'s text."""
    return f"<|voice:{author}|>"


def add_markers(tokenizer: Any, authors: list[str]) -> dict[str, int]:
    """Add one special token per author to `tokenizer` (in place); return author → token id, in the given order.

    Markers are special tokens: one id each, never split by the BPE, and dropped when
    decoding with `skip_special_tokens`.
    """
    tokenizer.add_special_tokens({"additional_special_tokens": [marker(a) for a in authors]},
                                 replace_extra_special_tokens=False)
    return {a: tokenizer.convert_tokens_to_ids(marker(a)) for a in authors}


def markers_of(tokenizer: Any) -> dict[str, int]:
    """The voices a tokenizer carries: author → marker id, in id order (empty for a run without voices)."""
    found = {}
    for token, token_id in tokenizer.get_added_vocab().items():
        match = MARKER_PATTERN.match(token)
        if match:
            found[match.group(1)] = int(token_id)
    return dict(sorted(found.items(), key=lambda item: item[1]))


def add_marker_rows(model: Any, vocab_size: int) -> None:
    """Grow a pretrained model's embeddings (and an untied output layer) to `vocab_size` rows.

    New rows start at the mean of the existing ones: deterministic, so a LoRA adapter's
    base grows the same way every time it is loaded (its trained marker rows are then put
    in by PEFT), and a marker starts as an "average token" rather than noise.
    """
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if vocab_size <= old:
        return
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[old:] = embeddings[:old].mean(dim=0, keepdim=True)
        output = model.get_output_embeddings()
        if output is not None and output.weight is not embeddings:
            output.weight[old:] = output.weight[:old].mean(dim=0, keepdim=True)
            bias = getattr(output, "bias", None)
            if bias is not None:
                bias[old:] = bias[:old].mean()
