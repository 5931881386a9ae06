"""Readers: real samples from the shared corpus, synthetic encodings, wrappers and bad input."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import random
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from dvoinik.corpus.readers import (
    SECTIONS,
    RawText,
    ReadResult,
    Skipped,
    UndecodableError,
    decode_text,
    list_source_files,
    read_file,
)

# Only characters every supported page has (KOI8-R and cp866 lack « » and the em dash).
RU = (
    "Ёжик шёл по лесу, и всё вокруг казалось ему чужим. \"Где же мой дом?\" - спросил он "
    "у старой ели, но ель молчала. Тогда он сел на пенёк и заплакал."
)


def one(result: ReadResult) -> RawText:
    assert not result.skipped, result.skipped
    assert len(result.texts) == 1, result.texts
    return result.texts[0]


def skipped_reason(result: ReadResult) -> str:
    assert not result.texts, result.texts
    assert len(result.skipped) == 1, result.skipped
    reason = result.skipped[0].reason
    assert "\n" not in reason and "Traceback" not in reason
    return reason


# --- real samples -----------------------------------------------------------------------


def test_cp1251_text_files(shared_corpus: Path) -> None:
    formats = shared_corpus / "formats"
    iuda = one(read_file(formats / "andreev_iuda_iskariot.libru.cp1251.txt"))
    assert iuda.encoding == "cp1251" and iuda.format == "txt" and not iuda.structured
    assert "Иисуса Христа много раз предупреждали" in iuda.text
    assert "\r" not in iuda.text
    kust = one(read_file(formats / "bely_kust.az_lib_ru_page.cp1251.txt"))
    assert kust.encoding == "cp1251"
    assert "Иванушка-дурачок" in kust.text
    assert kust.title is None and kust.author is None


def test_fb2_two_stories_are_two_works_without_notes(shared_corpus: Path) -> None:
    path = shared_corpus / "formats" / "chekhov_two_stories.fb2"
    result = read_file(path)
    assert [t.title for t in result.texts] == ["Агафья", "Альбом"]
    assert [t.source for t in result.texts] == [f"{path}#1", f"{path}#2"]
    for t in result.texts:
        assert t.author == "Антон Чехов" and t.format == "fb2" and t.structured
        assert "Примечание редактора" not in t.text
    assert "В бытность мою" in result.texts[0].text
    assert "Титулярный советник Кратеров" in result.texts[1].text
    assert any("notes body" in n.reason for n in result.notes)

    chapters = one(read_file(path, sections="chapters"))
    assert chapters.source == str(path) and chapters.title == "Два рассказа"
    blocks = chapters.text.split("\n\n")
    assert "Агафья" in blocks and "Альбом" in blocks  # section titles kept as blocks
    assert "Примечание редактора" not in chapters.text


def test_fb2_cp1251_prolog(shared_corpus: Path) -> None:
    t = one(read_file(shared_corpus / "formats" / "chekhov_aniuta.cp1251.fb2"))
    assert t.encoding == "cp1251" and t.title == "Анюта" and t.author == "Антон Чехов"
    assert "меблированных комнат «Лиссабон»" in t.text


def test_fb2_inside_zip(shared_corpus: Path) -> None:
    path = shared_corpus / "formats" / "andreev_iuda_iskariot.fb2.zip"
    t = one(read_file(path))
    assert t.source == f"{path}!andreev_iuda_iskariot.fb2"
    assert t.format == "fb2" and t.title == "Иуда Искариот" and t.author == "Леонид Андреев"
    assert "Иисуса Христа много раз предупреждали" in t.text
    assert "Примечание редактора" not in t.text


def test_epub_spine_order_without_nav(shared_corpus: Path) -> None:
    path = shared_corpus / "formats" / "gogol_sample.epub"
    t = one(read_file(path))
    assert t.format == "epub" and t.structured
    assert t.title == "Гоголь: образец" and t.author == "Николай Гоголь"
    positions = [t.text.index(f"Часть {i}") for i in (1, 2, 3)]
    assert positions == sorted(positions)
    assert t.text.count("Часть 1") == 1  # the nav document's table of contents is left out
    assert "Городок Б. очень повеселел" in t.text
    assert "p{text-indent" not in t.text  # the <style>
    assert any("navigation" in n.reason for n in read_file(path).notes)

    works = read_file(path, sections="works")
    assert [w.title for w in works.texts] == ["Часть 1", "Часть 2", "Часть 3"]
    assert works.texts[2].source == f"{path}#3"


def test_ru_classics_xz_read_as_utf8(shared_corpus: Path) -> None:
    files = sorted((shared_corpus / "ru-classics").glob("*/*.txt.xz"))
    assert len(files) > 200
    for path in files[::50]:
        t = one(read_file(path))
        assert t.encoding == "utf-8" and t.format == "txt" and not t.structured
        assert t.source == str(path)
        assert sum("а" <= c <= "я" for c in t.text[:5000]) > 1000


def test_short_cp1251_vs_koi8r_slices_of_real_prose(shared_corpus: Path) -> None:
    text = one(read_file(shared_corpus / "ru-classics" / "chekhov" / sorted(
        p.name for p in (shared_corpus / "ru-classics" / "chekhov").glob("*.txt.xz"))[0])).text
    text = " ".join(text.split())
    for start in range(1000, 1000 + 150 * 20, 150):
        piece = text[start : start + 150]
        for enc in ("cp1251", "koi8-r"):
            data = piece.encode(enc, "replace")
            if data.isascii():
                continue
            assert decode_text(data)[1] == enc, (enc, piece)


# --- encodings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "expected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),  # with BOM
        ("utf-16-le", "utf-16"),  # no BOM
        ("utf-16-be", "utf-16"),  # no BOM
        ("utf-32", "utf-32"),
        ("cp1251", "cp1251"),
        ("koi8-r", "koi8-r"),
        ("cp866", "cp866"),
        ("mac-cyrillic", "mac-cyrillic"),
    ],
)
def test_encodings_of_a_short_paragraph(tmp_path: Path, codec: str, expected: str) -> None:
    path = tmp_path / "story.dat"  # the extension says nothing
    path.write_bytes((RU + "\r\n" + RU.upper()[:40] + "\r\n").encode(codec))
    t = one(read_file(path))
    assert t.encoding == expected
    assert t.text == RU + "\n" + RU.upper()[:40] + "\n"  # BOM stripped, CRLF -> LF
    assert "ё" in t.text and "\ufeff" not in t.text


@pytest.mark.parametrize(
    "sentence",
    [
        "Мы пили чай на веранде и говорили о погоде, о соседях, о том, что лето выдалось жаркое.",
        "Он долго смотрел в окно. Дождь не переставал.",
        "В самом дешевом номерке меблированных комнат ходил студент-медик и усердно зубрил.",
    ],
)
def test_cp1251_and_koi8r_told_apart(sentence: str) -> None:
    for enc in ("cp1251", "koi8-r"):
        assert decode_text(sentence.encode(enc)) == (sentence, enc)


def test_cr_only_line_endings_and_mostly_utf8() -> None:
    assert decode_text("а\rб\r\nв".encode()) == ("а\nб\nв", "utf-8")
    cut = (RU * 3).encode()[:-1]  # a file cut inside its last character is still UTF-8
    assert decode_text(cut)[1] == "utf-8"


def test_decode_text_rejects_binary_and_random_high_bytes() -> None:
    rnd = random.Random(7)
    with pytest.raises(UndecodableError, match="binary"):
        decode_text(bytes(rnd.randrange(256) for _ in range(4000)) + b"\x00\x00")
    high = bytes(rnd.randrange(0x80, 0x100) for _ in range(4000))
    with pytest.raises(UndecodableError, match="not decodable"):
        decode_text(high)
    assert issubclass(UndecodableError, ValueError)


# --- HTML, DOCX, FB2 details -------------------------------------------------------------


HTML = """<!DOCTYPE html>
<html><head><meta charset="windows-1251"><title>Рассказ о ёлке</title>
<style>body { color: red }</style><script>var menu = "Главное меню";</script></head>
<body>
<header><a href="/">На главную</a></header>
<nav><ul><li>Раздел первый</li><li>Раздел второй</li></ul></nav>
<div class="sidebar-left">Реклама и ссылки</div>
<article>
<h1>Ёлка</h1>
<p>Первый   абзац
текста, перенесённый в исходнике.</p>
<p>Второй абзац.<br>Новая строка стиха.</p>
<blockquote>Цитата в рамке.</blockquote>
<pre>  код  с   пробелами
  вторая строка</pre>
</article>
<footer>© Сайт, все права защищены</footer>
<noscript>Включите JavaScript</noscript>
</body></html>
"""


def test_html_text_without_navigation(tmp_path: Path) -> None:
    path = tmp_path / "page.txt"  # sniffed as HTML despite the extension
    path.write_bytes(HTML.encode("cp1251"))
    result = read_file(path)
    t = one(result)
    assert t.format == "html" and t.encoding == "cp1251" and t.title == "Рассказ о ёлке"
    assert t.text.split("\n\n") == [
        "Ёлка",
        "Первый абзац текста, перенесённый в исходнике.",
        "Второй абзац.\nНовая строка стиха.",
        "Цитата в рамке.",
        "  код  с   пробелами\n  вторая строка",
    ]
    for junk in ("На главную", "Раздел", "Реклама", "©", "JavaScript", "color", "Главное меню"):
        assert junk not in t.text
    assert t.structured
    assert any("navigation removed" in n.reason for n in result.notes)


def test_html_mostly_pre_is_unstructured(tmp_path: Path) -> None:
    path = tmp_path / "old.html"
    body = "\n".join(f"    Строка старого текста номер {i}, свёрстанного вручную." for i in range(30))
    path.write_text(f"<html><body><h1>Заголовок</h1><pre>{body}</pre></body></html>", encoding="koi8-r")
    t = one(read_file(path))
    assert not t.structured and t.encoding == "koi8-r" and t.title == "Заголовок"
    assert body in t.text


def test_docx_made_with_python_docx(tmp_path: Path) -> None:
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.core_properties.title = "Повесть"
    document.core_properties.author = "Иван Бунин"
    document.add_paragraph("Первый абзац повести.")
    document.add_paragraph("")
    document.add_paragraph("Второй абзац, ёмкий.")
    path = tmp_path / "story.docx"
    document.save(path)
    t = one(read_file(path))
    assert (t.format, t.title, t.author, t.structured) == ("docx", "Повесть", "Иван Бунин", True)
    assert t.text == "Первый абзац повести.\n\nВторой абзац, ёмкий."

    bad = tmp_path / "bad.docx"
    data = path.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    assert "corrupt" in skipped_reason(read_file(bad))


def fb2(body: str, extra: str = "", encoding: str = "utf-8") -> bytes:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        '<FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0" xmlns:l="http://www.w3.org/1999/xlink">'
        "<description><title-info><author><first-name>Фёдор</first-name><middle-name>Михайлович</middle-name>"
        "<last-name>Достоевский</last-name></author><book-title>Книга</book-title></title-info></description>"
        f"<body>{body}</body>{extra}</FictionBook>"
    ).encode(encoding)


def test_fb2_markup_poems_and_note_links(tmp_path: Path) -> None:
    body = (
        "<section><title><p>Глава I</p></title>"
        "<epigraph><p>Эпиграф.</p><text-author>Поэт</text-author></epigraph>"
        '<p>Он сказал<a l:href="#n1" type="note">[1]</a> и ушёл<a l:href="#n2">2</a>.</p>'
        "<empty-line/><poem><stanza><v>Строка один,</v><v>строка два.</v></stanza>"
        "<stanza><v>Третья.</v></stanza></poem><subtitle>* * *</subtitle><cite><p>Цитата.</p></cite></section>"
        "<section><title><p>Глава II</p></title><p>Конец.</p></section>"
    )
    notes = '<body name="notes"><section id="n1"><p>Сноска один.</p></section><section id="n2"><p>Сноска два.</p></section></body>'
    path = tmp_path / "book.fb2"
    path.write_bytes(fb2(body, notes))
    result = read_file(path)  # chapter headings -> one work in auto mode
    t = one(result)
    assert t.author == "Фёдор Михайлович Достоевский" and t.title == "Книга"
    assert t.text.split("\n\n") == [
        "Глава I", "Эпиграф.", "Поэт", "Он сказал и ушёл.",
        "Строка один,\nстрока два.", "Третья.", "* * *", "Цитата.", "Глава II", "Конец.",
    ]
    assert any("2 notes" in n.reason for n in result.notes)
    works = read_file(path, sections="works")
    assert [w.title for w in works.texts] == ["Глава I", "Глава II"]
    assert works.texts[1].text == "Конец."


def test_fb2_xxe_reads_nothing_outside_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("СЕКРЕТНОЕ-СОДЕРЖИМОЕ")
    data = (
        '<?xml version="1.0"?>\n'
        f'<!DOCTYPE FictionBook [<!ENTITY e SYSTEM "file://{secret}"><!ENTITY p SYSTEM "file:///etc/passwd">'
        '<!ENTITY a "ааааааааааа"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        '<FictionBook xmlns="http://www.gribuser.ru/xml/fictionbook/2.0"><body><section>'
        "<p>До &e; &p; после &c;.</p></section></body></FictionBook>"
    )
    path = tmp_path / "xxe.fb2"
    path.write_text(data)
    result = read_file(path)
    texts = " ".join(t.text for t in result.texts)
    assert "СЕКРЕТНОЕ" not in texts and "root:" not in texts and "ааааа" not in texts
    assert "До" in texts and "после" in texts


def test_fb2_malformed_recovered_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "broken.fb2"
    path.write_bytes(fb2("<section><p>Целый абзац.</p><p>Оборванный <b>абзац</p></section>"))
    result = read_file(path)
    assert "Целый абзац." in one(result).text
    assert any("malformed FB2 XML recovered" in n.reason for n in result.notes)

    hopeless = tmp_path / "hopeless.fb2"
    hopeless.write_bytes(b"<FictionBook <<<< &&& >>>")
    assert "malformed" in skipped_reason(read_file(hopeless))


# --- wrappers and archives --------------------------------------------------------------


def test_compressed_wrappers(tmp_path: Path) -> None:
    raw = RU.encode("cp1251")
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "b.txt.bz2").write_bytes(bz2.compress(raw))
    (tmp_path / "c.txt.xz").write_bytes(lzma.compress(raw))
    (tmp_path / "d.fb2.gz").write_bytes(gzip.compress(fb2("<section><p>Абзац из архива.</p></section>")))
    for name in ("a.txt.gz", "b.txt.bz2", "c.txt.xz"):
        t = one(read_file(tmp_path / name))
        assert (t.text, t.encoding, t.format, t.source) == (RU, "cp1251", "txt", str(tmp_path / name))
    assert one(read_file(tmp_path / "d.fb2.gz")).text == "Абзац из архива."


def test_zip_archive_members_nested_and_hidden(tmp_path: Path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("deep/story.txt", "Вложенный рассказ, ёлка.")
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tf:
        payload = "Рассказ из тарбола.".encode()
        info = tarfile.TarInfo("t/one.txt")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    path = tmp_path / "books.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("dir/", "")
        z.writestr("dir/a.txt", RU.encode("koi8-r"))
        z.writestr("__MACOSX/dir/._a.txt", b"\x00\x05\x16\x07junk")
        z.writestr(".hidden.txt", "скрытый")
        z.writestr("inner.zip", inner.getvalue())
        z.writestr("pack.tar.gz", tar_buf.getvalue())
    result = read_file(path)
    assert not result.skipped
    by_source = {t.source: t for t in result.texts}
    assert set(by_source) == {
        f"{path}!dir/a.txt", f"{path}!inner.zip!deep/story.txt", f"{path}!pack.tar.gz!t/one.txt"}
    assert by_source[f"{path}!dir/a.txt"].encoding == "koi8-r"
    assert by_source[f"{path}!dir/a.txt"].text == RU


def test_zip_with_one_bad_member_keeps_the_good(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("good.txt", "Хороший текст остаётся.")
        z.writestr("bad.txt", "Испорченный текст пропадает.")
    data = bytearray(buf.getvalue())
    pos = data.find("Испорченный".encode())
    data[pos] ^= 0xFF  # CRC no longer matches
    path = tmp_path / "mixed.zip"
    path.write_bytes(bytes(data))
    result = read_file(path)
    assert [t.text for t in result.texts] == ["Хороший текст остаётся."]
    assert [s.source for s in result.skipped] == [f"{path}!bad.txt"]
    assert "CRC" in result.skipped[0].reason


def test_decompression_bomb_stops_at_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bomb.txt.gz"
    path.write_bytes(gzip.compress(b"a" * 5_000_000))
    assert "limit" in skipped_reason(read_file(path, max_bytes=1_000_000))
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.txt", b"a" * 5_000_000)
    result = read_file(zpath, max_bytes=1_000_000)
    assert not result.texts and "decompression bomb" in result.skipped[0].reason


def sparse_tar(real_size: int, name: str = "hole.txt") -> bytes:
    """A GNU tar whose one member stores 1 byte and unpacks to `real_size` (a sparse file: the rest is a hole).

    tarfile reads sparse members but cannot write them, so the header is patched by hand.
    """
    info = tarfile.TarInfo(name)
    info.size = 1
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[386:410] = tarfile.itn(0, 12, tarfile.GNU_FORMAT) + tarfile.itn(1, 12, tarfile.GNU_FORMAT)  # data at 0, 1 byte
    header[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b"        "
    header[148:156] = f"{sum(header[:512]):06o}\0 ".encode()
    return bytes(header[:512]) + b"a" + b"\0" * 511 + b"\0" * 1024


def test_a_sparse_tar_member_is_charged_its_real_size(tmp_path: Path) -> None:
    path = tmp_path / "sparse.tar"
    path.write_bytes(sparse_tar(200_000_000))  # 2 KB on disk, 200 MB unpacked
    assert path.stat().st_size < 3000
    with tarfile.open(path) as tar:
        assert tar.getmembers()[0].size == 200_000_000  # what an unpacker would write
    result = read_file(path, max_bytes=1_000_000)  # refused from its header, before a byte is unpacked
    assert "decompression bomb" in skipped_reason(result) and result.skipped[0].source == f"{path}!hole.txt"
    small = tmp_path / "small.tar.gz"  # under the limit, a sparse member is read like any other
    small.write_bytes(gzip.compress(sparse_tar(5000)))
    assert "binary" in skipped_reason(read_file(small, max_bytes=1_000_000))


def test_archives_nested_too_deep(tmp_path: Path) -> None:
    data = "Дно матрёшки.".encode()
    for _ in range(6):
        data = gzip.compress(data)
    path = tmp_path / "deep.gz"
    path.write_bytes(data)
    assert "nested deeper" in skipped_reason(read_file(path))


# --- bad input --------------------------------------------------------------------------


def test_bad_inputs_become_skipped(tmp_path: Path) -> None:
    rnd = random.Random(1)
    cases = {
        "empty.txt": (b"", "empty file"),
        "blank.txt": (b"  \n\t\r\n   \n", "whitespace only"),
        "random.bin": (bytes(rnd.randrange(256) for _ in range(5000)), "binary file"),
        "image.txt": (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG image"),
        "doc.pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF document"),
        "cut.txt.gz": (gzip.compress(RU.encode() * 50)[:-30], "corrupt gzip"),
        "cut.txt.xz": (lzma.compress(RU.encode() * 50)[:-30], "corrupt xz"),
        "broken.zip": (b"PK\x03\x04" + bytes(rnd.randrange(256) for _ in range(300)), "corrupt zip"),
        "high.txt": (bytes(rnd.randrange(0x80, 0x100) for _ in range(3000)), "not decodable"),
    }
    for name, (data, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert expected in skipped_reason(read_file(path)), name


def test_unreadable_paths(tmp_path: Path) -> None:
    assert "directory" in skipped_reason(read_file(tmp_path))
    link = tmp_path / "dangling.txt"
    link.symlink_to(tmp_path / "nowhere.txt")
    assert "cannot read" in skipped_reason(read_file(link))
    if os.geteuid() != 0:  # root reads mode-000 files anyway
        locked = tmp_path / "locked.txt"
        locked.write_text("текст")
        locked.chmod(0)
        try:
            assert "cannot read" in skipped_reason(read_file(locked))
        finally:
            locked.chmod(0o644)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_pipes_and_devices_are_skipped_not_opened(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)  # opening it would block the build forever
    assert "named pipe" in skipped_reason(read_file(pipe))
    if Path("/dev/zero").exists():  # an endless stream behind an innocent name
        device = tmp_path / "zeros.txt"
        device.symlink_to("/dev/zero")
        assert "character device" in skipped_reason(read_file(device))


def test_enormous_single_line_is_fast(tmp_path: Path) -> None:
    line = ("Очень длинная строка без переводов, ёмкая и бесконечная. " * 200_000)[:10_000_000]
    path = tmp_path / "line.txt"
    path.write_bytes(line.encode("utf-8"))  # about 20 MB
    cp = tmp_path / "line1251.txt"
    cp.write_bytes(line.encode("cp1251"))
    start = time.perf_counter()
    assert one(read_file(path)).text == line
    t = one(read_file(cp))
    assert t.encoding == "cp1251" and len(t.text) == len(line)
    assert time.perf_counter() - start < 5


def test_file_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    path.write_bytes(RU.encode("cp1251") + b"\r\n")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_file(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_folder_with_good_and_bad_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("hidden dir")
    (tmp_path / ".notes.txt").write_text("hidden file")
    (tmp_path / "a.txt").write_bytes(RU.encode("koi8-r"))
    (tmp_path / "sub" / "b.fb2").write_bytes(fb2("<section><p>Абзац.</p></section>"))
    (tmp_path / "sub" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (tmp_path / "sub" / "d.txt").write_bytes(b"")
    files = list_source_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.txt", "sub/b.fb2", "sub/c.png", "sub/d.txt"]
    assert list_source_files(tmp_path / "a.txt") == [tmp_path / "a.txt"]
    results = [read_file(p) for p in files]
    assert [len(r.texts) for r in results] == [1, 1, 0, 0]
    assert [len(r.skipped) for r in results] == [0, 0, 1, 1]


def test_results_are_picklable_for_worker_processes(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(RU)
    result = read_file(path)
    assert pickle.loads(pickle.dumps(result)) == result
    assert pickle.loads(pickle.dumps(read_file)) is read_file
    assert isinstance(result.texts[0], RawText) and Skipped("x", "y").reason == "y"
    assert SECTIONS == ("auto", "works", "chapters")


def test_fb2_without_prolog_in_cp1251_and_html_in_utf16(tmp_path: Path) -> None:
    path = tmp_path / "noprolog.fb2"
    path.write_bytes(fb2("<section><p>" + RU + "</p></section>").split(b"?>", 1)[1].decode().encode("cp1251"))
    t = one(read_file(path))
    assert (t.text, t.encoding, t.author) == (RU, "cp1251", "Фёдор Михайлович Достоевский")
    page = tmp_path / "page.htm"
    page.write_bytes("<html><body><p>Абзац в UTF-16.</p></body></html>".encode("utf-16"))
    t = one(read_file(page))
    assert (t.format, t.text, t.encoding) == ("html", "Абзац в UTF-16.", "utf-16")


def test_names_that_are_not_utf8_are_read_and_shown_escaped(tmp_path: Path) -> None:
    name = os.fsdecode("Ёжик".encode("cp1251") + b".txt")
    (tmp_path / name).write_text(RU, encoding="utf-8")
    result = read_file(tmp_path / name)
    assert one(result).source == f"{tmp_path}/\\xa8\\xe6\\xe8\\xea.txt"  # printable, and it says which bytes
    tar_path = tmp_path / "names.tar"
    with tarfile.open(tar_path, "w", format=tarfile.GNU_FORMAT, encoding="cp1251") as tar:
        info = tarfile.TarInfo("Ёжик.txt")
        info.size = len(RU.encode())
        tar.addfile(info, io.BytesIO(RU.encode()))
    assert one(read_file(tar_path)).source == f"{tar_path}!\\xa8\\xe6\\xe8\\xea.txt"
    zip_path = tmp_path / "names.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("xxxxxxxx.txt", RU)
    # The name's UTF-8 bytes without the flag that says so, as many zip tools write them.
    zip_path.write_bytes(buffer.getvalue().replace(b"xxxxxxxx.txt", "Ёжик.txt".encode()))
    assert one(read_file(zip_path)).source == f"{zip_path}!Ёжик.txt"
