"""The Ollama Modelfile and RUNNING.md: every preset setting spelled out in llama.cpp's terms, and what is lost said."""

from __future__ import annotations

from dvoinik.export.options import slug
from dvoinik.export.runners import modelfile, running_notes, sampling_for
from dvoinik.generation.decoding import decoding_for


def parameters(text: str) -> dict[str, str]:
    return dict(line.split()[1:3] for line in text.splitlines() if line.startswith("PARAMETER "))


def test_modelfile_spells_out_the_preset_and_passes_the_prompt_unchanged() -> None:
    text = modelfile("andreev-q8_0.gguf", decoding_for("coherent", max_new_tokens=150), 512)
    assert "FROM ./andreev-q8_0.gguf" in text and 'TEMPLATE """{{ .Prompt }}"""' in text
    assert parameters(text) == {"num_ctx": "512", "num_predict": "150", "temperature": "0.7", "top_k": "0",
                                "top_p": "0.95", "min_p": "0", "repeat_penalty": "1.15", "repeat_last_n": "-1"}


def test_greedy_and_beam_become_temperature_zero_and_say_what_is_lost() -> None:
    assert parameters(modelfile("m.gguf", decoding_for("greedy"), 128))["temperature"] == "0"
    beam = sampling_for(decoding_for("beam"))
    assert beam.temperature == 0 and any("beam search" in item for item in beam.lost)
    assert "# Not available in Ollama: no repeated 3-grams." in modelfile("m.gguf", decoding_for("beam"), 128)


def test_running_notes_cover_each_tool_with_the_same_settings() -> None:
    text = running_notes("Андреев", "andreev-f16.gguf", decoding_for("nucleus"), 512, "andreev", "Он вышел", 10)
    for tool in ("## KoboldCpp", "## LM Studio", "## Ollama", "## llama.cpp"):
        assert tool in text
    assert "Temperature 1, Top-p 0.9, Top-K 0, Min-P 0" in text and "Rep. Pen. Range 512" in text
    assert "never copies\n10 tokens in a row" in text and "--contextsize 512" in text


def test_slug_transliterates_russian_names() -> None:
    assert slug("Андреев") == "andreev" and slug("Цель Тестовая") == "tsel-testovaia"
    assert slug("Ключарёва, Варвара") == "kliuchareva-varvara" and slug("Émile Zola") == "emile-zola"
    assert slug("…") == "double"
