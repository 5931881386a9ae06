"""What the KoboldAI and OpenAI APIs share (the limits, with the studio too): a client's sampler fields as a
Decoding, the server's [serve] limits, copy scores."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, field_validator

from dvoinik.generation.decoding import PRESET_VALUES, Decoding, decoding_for, random_seed
from dvoinik.generation.variants import Variant
from dvoinik.generation.voices import Voice, check_voice, parse_voice
from dvoinik.serve.app import Server

MAX_STOP_STRINGS = 64
# Every stop string is looked for after every token: their total length, not only their number, is bounded.
MAX_STOP_CHARS = 2000


def lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in a request value (strings, and lists and dicts of them), or None.

    JSON may spell one (`"\\ud800"`) and Python decodes it, but it is not text: the database,
    the tokenizer and the response's UTF-8 would each fail on it later, as a 500.
    """
    if isinstance(value, str):
        match = _SURROGATE.search(value)
        return match.group() if match else None
    if isinstance(value, (list, tuple)):
        return next((found for item in value if (found := lone_surrogate(item))), None)
    if isinstance(value, dict):
        return next((found for pair in value.items() if (found := lone_surrogate(list(pair)))), None)
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


class RequestModel(BaseModel):
    """The base of every request body of the three APIs: no text field holds a lone surrogate (422 naming it)."""

    @field_validator("*", mode="after")
    @classmethod
    def _whole_characters(cls, value: Any) -> Any:
        found = lone_surrogate(value)
        if found is not None:
            raise ValueError(f"holds a lone surrogate (\\u{ord(found):04x}), which is not a character; send text")
        return value


def client_decoding(server: Server, temperature: float | None, max_new_tokens: int, seed: int | None,
                    stop: tuple[str, ...] = (), **samplers: Any) -> Decoding:
    """The server's preset under what a client gave (None = not given); shared by the KoboldAI and OpenAI APIs.

    A temperature of 0 means greedy decoding. Any other temperature means sampling: on the
    server's preset if it samples, else on `coherent` (a client that sets a temperature
    expects it to count, and greedy or beam search would ignore it).
    """
    preset = server.generate.preset
    chosen: dict[str, Any] = {}
    if temperature == 0:
        preset = "greedy"
    elif temperature is not None:
        if not PRESET_VALUES[preset].get("do_sample", False):
            preset = "coherent"
        chosen["temperature"] = temperature
    # Seeds are kept modulo 2**63: OpenAI's may be any 64-bit integer, the log's SQLite integers are signed.
    return decoding_for(preset, max_new_tokens=max_new_tokens, stop=stop,
                        seed=random_seed() if seed is None else seed % 2**63, **chosen, **samplers)


def invalid(field_name: str, message: str) -> RequestValidationError:
    """A field error in the shape the app gives pydantic's (KoboldAI: 422 `{"detail": {field: [msg]}}`)."""
    return RequestValidationError([{"loc": ("body", field_name), "msg": message, "type": "value_error"}])


def check_variants(server: Server, n: int, name: str) -> None:
    if n > server.settings.max_variants:
        raise invalid(name, f"this server writes at most {server.settings.max_variants} variants per request "
                            "([serve] max_variants)")


def check_new_tokens(server: Server, max_new_tokens: int, name: str) -> None:
    if max_new_tokens > server.settings.max_new_tokens:
        raise invalid(name, f"this server writes at most {server.settings.max_new_tokens} tokens per request "
                            "([serve] max_new_tokens)")


def check_stops(stop: tuple[str, ...], name: str) -> None:
    total = sum(len(s) for s in stop)
    if total > MAX_STOP_CHARS:
        raise invalid(name, f"the stop strings are {total} characters together; this server takes at most "
                            f"{MAX_STOP_CHARS}")


def check_text(server: Server, chars: int, name: str) -> None:
    if chars > server.settings.max_text_chars:
        raise invalid(name, f"the text is {chars} characters; this server takes at most "
                            f"{server.settings.max_text_chars} ([serve] max_text_chars)")


def copy_json(variant: Variant) -> dict | None:
    return asdict(variant.copy) if variant.copy else None


def client_voice(server: Server, value: str | dict[str, float] | None) -> Voice | None:
    """A client's voice ("NAME", "A=0.7,B=0.3" or {"A": 0.7, "B": 0.3}) for a run with voices; None = the target's.

    GenerationError (the API's 400/422) names a voice the double does not have.
    """
    if value is None or value == "" or value == {}:
        return None
    voices = server.engine.double.voices
    return parse_voice(value, voices) if isinstance(value, str) else check_voice(value, voices)
