"""The normaliser: what makes two spellings of a passage the same words, and where each word is in the text."""

from __future__ import annotations

import pytest

from dvoinik.generation.words import normalise_word, normalise_words, normalised_text


@pytest.mark.parametrize(("written", "normal"), [
    # Quotes of every kind, dashes of every kind and all punctuation only separate words.
    ("«Ёлка», — сказал он.", "елка сказал он"),
    ('"Ёлка", -- сказал он.', "елка сказал он"),
    ("„Ёлка“ – сказал он…", "елка сказал он"),
    ("‘Ёлка’ - сказал он!", "елка сказал он"),
    ("Москва—Петербург, слово--слово", "москва петербург слово слово"),
    # Spaces of every kind and line breaks.
    ("раз\u00a0два\u202fтри\u2009четыре\tпять\r\nшесть\n\nсемь\u2028восемь", "раз два три четыре пять шесть семь восемь"),
    # Hyphenated words are one word, however they are broken; a hyphen after a space is a dash.
    ("кто-нибудь", "ктонибудь"),
    ("кто-\nнибудь", "ктонибудь"),
    ("кто‐нибудь кто‑нибудь", "ктонибудь ктонибудь"),
    ("чело-\nвек, чело-\r\n   век, чело- век, чело-  \n  век", "человек человек человек человек"),
    ("он -\nчеловек; он - человек", "он человек он человек"),
    ("раз-\n\nдва", "раз два"),  # a paragraph break is not a line break inside a word
    # Soft hyphens, zero-width characters and a BOM are invisible; a soft hyphen at a line end joins.
    ("со\u00adлн\u00adце, сол\u00ad\nнце, сол\u00ad нце", "солнце солнце солнце"),
    ("\ufeffНа\u200bчало", "начало"),
    # Apostrophes between letters join.
    ("д’Артаньян, д'Артаньян, don't", "дартаньян дартаньян dont"),
    # ё and Ё, stress marks (Leskov), decomposed letters, case.
    ("Ёж и ёлка", "еж и елка"),
    ("вы\u0301пил во\u0300дку, ВЫ\u0301ПИЛ", "выпил водку выпил"),
    ("и\u0306од йод е\u0308лка", "йод йод елка"),
    # NFKC: ligatures and full-width forms; superscript digits (footnote markers) are not words.
    ("ﬁne ＡＢＣ слово¹ ² слово", "fine abc слово слово"),
    ("_курсив_ и a_b", "курсив и ab"),
    ("1941-1945 гг., 3.14", "19411945 гг 3 14"),
])
def test_spellings_of_the_same_words_normalise_alike(written: str, normal: str) -> None:
    assert normalised_text(written) == normal


def test_words_map_back_to_the_characters_as_written() -> None:
    text = "— «Чело-\nвек», — сказа\u0301л он; кто-нибудь¹."
    words = normalise_words(text)
    assert words.words == ["человек", "сказал", "он", "ктонибудь"]
    assert [text[a:b] for a, b in zip(words.starts, words.ends)] == ["Чело-\nвек", "сказа\u0301л", "он", "кто-нибудь¹"]
    assert words.chars(1, 2) == (text.index("сказа"), text.index("он;") + 2)
    assert text[slice(*words.chars(0, 4))].startswith("Чело") and text[slice(*words.chars(0, 4))].endswith("нибудь¹")


def test_no_words() -> None:
    for text in ("", "   \n\n", "— … «» -- ¹²", "\u00ad\u200b"):
        words = normalise_words(text)
        assert words.words == [] and len(words.starts) == len(words.ends) == 0


def test_other_scripts_are_words_too() -> None:
    assert normalised_text("Straße, ΣΟΦΊΑ, שָׁלוֹם, 東京タワー") == "strasse σοφια שָׁלוֹם 東京タワー"
    assert normalise_word("Ё") == "е" and normalise_word("¹") == ""
