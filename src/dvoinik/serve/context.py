"""The studio's prompt: memory, world info, the story and the author's note, fitted to the token budget.

    context = build_context(state, tokenizer, budget=1024, max_new_tokens=200)
    context.prompt        # what the double continues
    context.parts         # how the budget is spent, part by part, and what was cut

As in KoboldAI: memory stays at the top; world-info entries follow it when one of their
keys (and, if they have any, one of their secondary keys) appears in the recent story
text, or always when they are marked so; the author's note goes into the story before
its last `note_depth` paragraphs, where it steers the next lines most. What does not fit
is cut from the *start of the story* first: the writer's standing instructions outlive
old chapters. Only when they alone overflow the budget are world-info entries dropped
(last first), then the note, then the start of memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dvoinik.generation.decoding import GenerationError
from dvoinik.serve.store import DocumentState, WorldInfo

SCAN_CHARS = 4000  # world-info keys are looked for in this much of the story's end
TAIL_CHARS_PER_TOKEN = 32  # no token is longer: this many characters per token of room hold the whole context
NOTE_TEMPLATE = "[{note}]"  # KoboldAI's convention: the brackets set the note apart from the prose
SEPARATOR = "\n"


@dataclass(frozen=True)
class ContextPart:
    part: str  # memory, world_info, authors_note, story
    tokens: int
    cut_tokens: int = 0
    entries: tuple[int, ...] = ()  # world info: the indexes of the inserted entries
    estimated: bool = False  # cut_tokens of a long story: the part never tokenized is estimated

    def to_json(self) -> dict:
        out: dict[str, Any] = {"part": self.part, "tokens": self.tokens, "cut_tokens": self.cut_tokens}
        if self.part == "story":
            out["cut_estimated"] = self.estimated
        if self.part == "world_info":
            out["entries"] = list(self.entries)
        return out


@dataclass(frozen=True)
class Context:
    prompt: str
    budget: int  # prompt + continuation
    max_new_tokens: int
    parts: tuple[ContextPart, ...] = field(default_factory=tuple)

    @property
    def used(self) -> int:
        return sum(p.tokens for p in self.parts)

    def to_json(self) -> dict:
        return {"budget": self.budget, "max_new_tokens": self.max_new_tokens, "used": self.used,
                "parts": [p.to_json() for p in self.parts], "prompt": self.prompt}


def triggered(entries: tuple[WorldInfo, ...], recent: str) -> list[int]:
    """Indexes of the world-info entries that go into the context for this recent text."""
    text = recent.casefold()

    def found(keys: tuple[str, ...]) -> bool:
        return any(k.strip() and k.strip().casefold() in text for k in keys)

    chosen = []
    for i, entry in enumerate(entries):
        if not entry.content.strip():
            continue
        if entry.always or (found(entry.keys) and (not any(k.strip() for k in entry.secondary_keys)
                                                    or found(entry.secondary_keys))):
            chosen.append(i)
    return chosen


def with_note(story: str, note: str, depth: int) -> str:
    """`story` with the note inserted as a paragraph before its last `depth` paragraphs."""
    if not note.strip():
        return story
    paragraphs = story.split("\n")
    at = max(0, len(paragraphs) - depth) if depth > 0 else len(paragraphs)
    return "\n".join(paragraphs[:at] + [NOTE_TEMPLATE.format(note=note.strip())] + paragraphs[at:])


def build_context(state: DocumentState, tokenizer: Any, budget: int, max_new_tokens: int) -> Context:
    """The prompt for continuing `state`'s story within `budget` tokens, `max_new_tokens` of them kept free."""
    room = budget - max_new_tokens
    if room < 1:
        raise GenerationError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the context of "
                              f"{budget} tokens")

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids if text else []

    memory_ids = ids(state.memory.strip())
    entries = triggered(state.world_info, state.text[-SCAN_CHARS:])
    entry_ids = [ids(state.world_info[i].content.strip()) for i in entries]
    note = state.authors_note.strip()
    note_ids = ids(NOTE_TEMPLATE.format(note=note)) if note else []

    # The standing parts, trimmed only when they alone overflow (one token each for separators).
    memory_cut = 0
    def standing() -> int:
        return len(memory_ids) + sum(len(e) + 1 for e in entry_ids) + (len(note_ids) + 1 if note_ids else 0) + 1
    while standing() > room and entry_ids:
        entry_ids.pop()
        entries.pop()
    if standing() > room and note_ids:
        note_ids, note = [], ""
    if standing() > room:
        keep = max(0, room - 1)
        memory_cut = len(memory_ids) - keep
        memory_ids = memory_ids[memory_cut:]

    # Only the story's end can reach the context: tokenizing a whole novel on every save would take seconds.
    story_room = max(0, room - standing())
    unread = max(0, len(state.text) - (story_room + 1) * TAIL_CHARS_PER_TOKEN)
    tail = state.text[unread:]
    story_ids = ids(tail)
    story_cut = max(0, len(story_ids) - story_room)
    unread_tokens = round(unread * len(story_ids) / len(tail)) if unread else 0  # estimated from the tail's rate
    head = [tokenizer.decode(memory_ids)] if memory_ids else []
    head += [tokenizer.decode(e) for e in entry_ids]

    def assemble(cut: int) -> str:
        story = tokenizer.decode(story_ids[cut:]) if cut else tail
        if (cut or unread) and story and not story[0].isspace():  # do not start on half a word
            space = next((i for i, ch in enumerate(story) if ch.isspace()), len(story))
            story = story[space:].lstrip()
        return SEPARATOR.join(head + [with_note(story, note, state.note_depth)])

    prompt = assemble(story_cut)
    # Pieces re-tokenized together can come out a few tokens longer than apart: cut the story by the excess.
    for _ in range(4):
        excess = len(ids(prompt)) - room
        if excess <= 0 or story_cut >= len(story_ids):
            break
        story_cut = min(len(story_ids), story_cut + excess)
        prompt = assemble(story_cut)

    parts = (
        ContextPart("memory", len(memory_ids), memory_cut),
        ContextPart("world_info", sum(len(e) for e in entry_ids), 0, tuple(entries)),
        ContextPart("authors_note", len(note_ids), 0),
        ContextPart("story", len(story_ids) - story_cut, story_cut + unread_tokens, estimated=bool(unread)),
    )
    return Context(prompt, budget, max_new_tokens, parts)
