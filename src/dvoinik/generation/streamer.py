"""Streaming: each variant's new text as it grows, never a stop string or half a character."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class VariantStreamer:
    """Receives each step's tokens from `generate` and hands out each variant's new text as it grows.

    Text is held back while it could still turn into a stop string, and while it ends in an
    incomplete UTF-8 character, so what is handed out is always a prefix of the final text.
    """

    def __init__(self, tokenizer: Any, rows: int, stop: tuple[str, ...], on_text: Callable[[int, str], None]) -> None:
        self.tokenizer, self.stop, self.on_text = tokenizer, stop, on_text
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.sent = [0] * rows
        self.done = [False] * rows
        self._prompt_seen = False
        self._anchor = continuation_anchor(tokenizer)

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate passes the prompt first
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.done[row]:
                continue
            if token == self.tokenizer.eos_token_id:
                self._flush(row, final=True)
                continue
            self.ids[row].append(token)
            self._flush(row, final=False)

    def end(self) -> None:
        for row in range(len(self.ids)):
            if not self.done[row]:
                self._flush(row, final=True)

    def _flush(self, row: int, final: bool) -> None:
        text, stopped = cut_at_stop(decode_continuation(self.tokenizer, self.ids[row], self._anchor), self.stop)
        if stopped or final:
            self.done[row] = True
        else:
            text = text[: len(text) - _held_back(text, self.stop)]
        if len(text) > self.sent[row]:
            self.on_text(row, text[self.sent[row]:])
            self.sent[row] = len(text)


def continuation_anchor(tokenizer: Any) -> list[int]:
    """A token to decode continuations after (see decode_continuation)."""
    return tokenizer("a", add_special_tokens=False).input_ids[:1]


def decode_continuation(tokenizer: Any, ids: list[int], anchor: list[int] | None = None) -> str:
    """The text of `ids` as it continues a text, not as a text of its own.

    SentencePiece-style decoders (Llama, Mistral, Gemma) drop the space that opens a text,
    so a continuation decoded alone would lose the space between the prompt and its first
    word; decoding it after an anchor token, and cutting the anchor off, keeps it.
    """
    anchor = continuation_anchor(tokenizer) if anchor is None else anchor
    if not anchor or not ids:
        return tokenizer.decode(ids, skip_special_tokens=True)
    head = len(tokenizer.decode(anchor, skip_special_tokens=True))
    return tokenizer.decode(anchor + list(ids), skip_special_tokens=True)[head:]


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the first stop string (not included), and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def _held_back(text: str, stop: tuple[str, ...]) -> int:
    """How many trailing characters might still change: an unfinished character or the start of a stop string.

    Only the places in the text's last len(s) - 1 characters where `s`'s first character
    stands are tried (the earliest that fits is the longest), not every length of `s`: in
    prose that is a few tries per stop string, where every length cost len(s) comparisons each.
    """
    held = len(text) - len(text.rstrip("\ufffd"))
    for s in stop:
        if len(s) < 2:
            continue
        tail = text[-(len(s) - 1):]
        start = tail.find(s[0])
        while start != -1:
            if s.startswith(tail[start:]):
                held = max(held, len(tail) - start)
                break
            start = tail.find(s[0], start + 1)
    return held


class StopStringsCriterion:
    """A transformers stopping criterion: a row ends once its new text holds one of the stop strings.

    transformers' own StopStringCriteria matches at the token level with tables whose size
    grows with the stop strings' length: 64 strings of 31 characters cost about 190 ms a step
    on a CPU. This decodes each row's new tokens and looks for each string only where it could
    have just been completed (from just before the text's previous end): a few `str.find`s a
    step, whatever their length.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], prompt_length: int) -> None:
        self.tokenizer, self.stop, self.prompt_length = tokenizer, tuple(s for s in stop if s), prompt_length
        self.longest = max((len(s) for s in self.stop), default=0)
        self._seen: dict[int, int] = {}  # row -> length of its text at the last look
        self._stopped: set[int] = set()

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        done = []
        for row, ids in enumerate(input_ids[:, self.prompt_length:].tolist()):
            if row not in self._stopped:
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                # The end of the text can change as a split character completes: look a little before it.
                start = max(0, self._seen.get(row, 0) - self.longest - 4)
                if any(text.find(s, start) >= 0 for s in self.stop):
                    self._stopped.add(row)
                self._seen[row] = len(text)
            done.append(row in self._stopped)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
