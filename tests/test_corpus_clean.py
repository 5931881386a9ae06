"""Cleaning rules, each on a small synthetic case and on the real dirt of the shared corpus."""

from __future__ import annotations

import lzma

import pytest

from dvoinik.corpus.clean import clean_text


def read_xz(shared_corpus, relative: str) -> str:
    with lzma.open(shared_corpus / "ru-classics" / relative, "rt", encoding="utf-8") as handle:
        return handle.read()


def paragraphs(text: str) -> list[str]:
    return text.split("\n\n")


PROSE = (
    "Иисуса Христа много раз предупреждали, что Иуда из Кариота человек очень дурной славы "
    "и его нужно остерегаться. Одни из учеников хорошо знали его сами, другие слыхали о нем от людей."
)


# --- layout ------------------------------------------------------------------------------


def test_hard_wrapped_lines_are_joined_and_indented_lines_start_paragraphs():
    raw = (
        "       Иисуса Христа много раз предупреждали, что Иуда из Кариота --\n"
        "    человек очень дурной славы и его нужно остерегаться. Одни из\n"
        "    учеников, бывавшие в Иудее, хорошо знали его сами, другие много\n"
        "    слыхали о нем от людей, и не было никого, кто мог бы сказать о нем\n"
        "    доброе слово.\n"
        "       И если порицали его добрые, говоря, что Иуда корыстолюбив,\n"
        "    коварен, наклонен к притворству и лжи, то и дурные, которых\n"
        "    расспрашивали об Иуде, поносили его самыми жестокими словами.\n"
        "       -- Он ссорит нас постоянно,-- говорили они, отплевываясь.\n"
    )
    result = clean_text(raw)
    parts = paragraphs(result.text)
    assert len(parts) == 3
    assert parts[0].startswith("Иисуса Христа") and parts[0].endswith("доброе слово.")
    assert "Кариота — человек очень" in parts[0]
    assert parts[2] == "— Он ссорит нас постоянно, — говорили они, отплевываясь."
    assert result.counts["joined_lines"] >= 5


def test_one_paragraph_per_line_text_keeps_its_paragraphs():
    raw = "Первая строка рассказа, довольно длинная и законченная.\nВторая строка.\n— Реплика!\n"
    assert paragraphs(clean_text(raw).text) == [
        "Первая строка рассказа, довольно длинная и законченная.",
        "Второя строка.".replace("Второя", "Вторая"),
        "— Реплика!",
    ]


def test_end_of_line_hyphenation_is_joined_but_real_hyphens_survive():
    raw = (
        "    Это был очень длинный и скучный день, когда мы шли по пере-\n"
        "    улку и говорили что-\n"
        "    то невнятное о погоде, о людях и о том, что ждет нас впе-\n"
        "    реди, за поворотом дороги, где кончается город и лес.\n"
    ) * 3
    text = clean_text(raw).text
    assert "переулку" in text
    assert "впереди" in text
    assert "что-то" in text


def test_page_numbers_are_removed_and_a_paragraph_split_by_one_is_rejoined():
    sentence = "Строка длинного рассказа о жизни и смерти, о любви и о долге."
    lines = []
    for page in range(338, 343):
        lines += [sentence[: 20 + 6 * k] for k in range(7)] + ["Он шел по улице и думал о том, что", str(page), "никогда не вернется домой."]
    result = clean_text("\n".join(lines))
    parts = paragraphs(result.text)
    assert not any(p.strip().isdigit() for p in parts)
    assert parts.count("Он шел по улице и думал о том, что никогда не вернется домой.") == 5
    assert result.counts["page_numbers"] == 5


def test_chapter_numbers_are_kept():
    raw = "I\n" + PROSE + "\nII\n" + PROSE + "\n3\n" + PROSE
    parts = paragraphs(clean_text(raw).text)
    assert parts[0] == "I" and "II" in parts and "3" in parts


# --- characters --------------------------------------------------------------------------


def test_dashes_quotes_and_spaces_are_normalised_and_yo_is_kept():
    raw = (
        '- Ещё раз, - сказал он,  "я  не понимаю"; это -- ошибка.\n'
        "– Что?\u00a0– спросила она.\n"
        "Годы 1812-1814 и 4—5 ребер остаются как есть, а также «ёлочки» и слово-дефис.\n"
    )
    parts = paragraphs(clean_text(raw).text)
    assert parts[0] == "— Ещё раз, — сказал он, «я не понимаю»; это — ошибка."
    assert parts[1] == "— Что? — спросила она."
    assert parts[2] == "Годы 1812-1814 и 4—5 ребер остаются как есть, а также «ёлочки» и слово-дефис."


def test_inner_german_quotes_are_kept():
    raw = "Он сказал: «Это „Медный всадник“, читай» — и ушел.\n"
    assert "„Медный всадник“" in clean_text(raw).text


def test_stress_marks_and_soft_hyphens_are_removed_but_yo_survives_decomposed_input():
    raw = "а вон смотри\u00ad-ка, что\u0301 с матерью, е\u0308лка и пото\u0301м.\n"
    result = clean_text(raw)
    assert result.text == "а вон смотри-ка, что с матерью, ёлка и потом."
    assert result.counts["stress_marks"] == 2


# --- furniture around the text -----------------------------------------------------------


def test_footnote_markers_and_editorial_insertions_are_removed():
    raw = (
        "Лакеи называют его «m-r le comte[1]», а он смеется.^2 Слово* и другое.\n"
        "Да как же ты, {Далее было начато: домово<го>} такой храбрый человек?{3}\n"
        "* * *\n"
    )
    parts = paragraphs(clean_text(raw).text)
    assert parts[0] == "Лакеи называют его «m-r le comte», а он смеется. Слово и другое."
    assert parts[1] == "Да как же ты, такой храбрый человек?"
    assert parts[2] == "* * *"


def test_endnote_block_after_a_notes_heading_is_cut():
    raw = "\n".join([PROSE] * 20 + ["Примечания", "", "1", "", "г-н граф (франц.).", "2", "г-жа графиня (франц.)."])
    result = clean_text(raw)
    assert "франц" not in result.text
    assert result.counts["endnote_blocks"] == 1


def test_bare_numbered_notes_at_the_end_are_cut():
    raw = "\n".join([PROSE] * 10 + ["— Грригорий, самовар!", "1", "до ости лопатки (лат.)."])
    result = clean_text(raw)
    assert result.text.endswith("— Грригорий, самовар!")


def test_title_and_author_header_is_separated_from_the_text():
    raw = "Антон Чехов\nАНЮТА\nВ самом дешевом номерке меблированных комнат «Лиссабон» ходил студент.\n" + PROSE
    result = clean_text(raw, author_hint="Чехов")
    assert result.title == "АНЮТА"
    assert result.header == ["Антон Чехов", "АНЮТА"]
    assert result.text.startswith("В самом дешевом номерке")


def test_name_dot_title_header():
    raw = "Валерий Брюсов. Республика Южного Креста\n\n" + PROSE + "\n" + PROSE
    assert clean_text(raw).title == "Республика Южного Креста"


def test_trailing_date_is_removed():
    raw = PROSE + "\n" + PROSE + "\nЯлта, 1899\n"
    result = clean_text(raw)
    assert result.text.endswith("от людей.")
    assert result.counts["trailing_dates"] == 1


def test_structured_input_keeps_verse_lines_inside_a_stanza():
    raw = "Глава первая\n\nНочь, улица, фонарь, аптека,\nБессмысленный и тусклый свет.\n\n" + PROSE
    parts = paragraphs(clean_text(raw, structured=True).text)
    assert parts[1] == "Ночь, улица, фонарь, аптека,\nБессмысленный и тусклый свет."


def test_empty_and_garbage_input_gives_empty_text():
    assert clean_text("").text == ""
    assert clean_text("\n\n   \n-----\n").text == ""


# --- the shared corpus's real dirt -------------------------------------------------------


def test_real_hard_wrapped_andreev(shared_corpus):
    result = clean_text(read_xz(shared_corpus, "andreev/iuda_iskariot.txt.xz"), author_hint="Андреев")
    parts = paragraphs(result.text)
    first = next(p for p in parts if p.startswith("Иисуса Христа"))
    assert "Кариота — человек очень дурной славы" in first
    assert "\n" not in first and "--" not in result.text
    assert result.text.rstrip().endswith("Иуда из Кариота, Предатель.")
    # Paragraphs are paragraphs, not lines: a 220 KB novella has a few hundred of them.
    assert 300 < len(parts) < 1500


def test_real_web_page_dump_bely(shared_corpus):
    raw = read_xz(shared_corpus, "bely/kust.txt.xz")
    result = clean_text(raw, author_hint="Белый")
    assert "http" not in result.text and "lib.ru" not in result.text.lower()
    assert "Ваша оценка" not in result.text and "Оставить комментарий" not in result.text
    assert "Рейтинг" not in result.text
    assert result.text.startswith("Эй, куда вы, Иван Иванович?")
    assert "Начальная строка" not in result.text  # the editor's endnotes
    assert result.title == "Куст"
    assert result.counts["navigation_blocks"] >= 3


def test_real_endnotes_and_markers_dostoevsky(shared_corpus):
    raw = read_xz(shared_corpus, "dostoevsky/igrok.txt.xz")
    result = clean_text(raw, author_hint="Достоевский")
    assert "[1]" not in result.text and "(франц.)" not in result.text[-5000:]
    assert result.title == "Игрок"
    assert result.text.rstrip().endswith("Завтра, завтра все кончится!")


def test_real_stress_marks_leskov(shared_corpus):
    raw = read_xz(shared_corpus, "leskov/nekuda.txt.xz")
    assert "\u0301" in raw
    result = clean_text(raw, author_hint="Лесков")
    assert "\u0301" not in result.text
    assert result.counts["stress_marks"] >= 40


def test_real_chekhov_header_and_footnote(shared_corpus):
    result = clean_text(read_xz(shared_corpus, "chekhov/aniuta.txt.xz"), author_hint="Чехов")
    assert result.title == "АНЮТА"
    assert result.text.startswith("В самом дешевом номерке")
    assert result.text.endswith("— Грригорий, самовар!")


@pytest.mark.parametrize("relative", ["tolstoy/metel.txt.xz", "gogol/nos.txt.xz", "pushkin/dubrovskii.txt.xz"])
def test_real_texts_keep_dialogue_dashes_and_yo(shared_corpus, relative):
    raw = read_xz(shared_corpus, relative)
    result = clean_text(raw)
    dialogue = [p for p in paragraphs(result.text) if p.startswith("—")]
    assert dialogue, "dialogue lines should start with an em dash"
    assert raw.count("ё") == 0 or "ё" in result.text
    assert " - " not in result.text and "--" not in result.text


def test_quote_style_follows_the_language() -> None:
    raw = 'Он сказал: "Иди". She said "go" and “left”.'
    assert clean_text(raw, language="ru").text == "Он сказал: «Иди». She said «go» and «left»."
    assert clean_text(raw, language="ru-RU").text == clean_text(raw, language="ru").text
    english = clean_text(raw, language="en")
    assert english.text == raw and english.counts["quotes"] == 0
