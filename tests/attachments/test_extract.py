"""Text from each kind of file, and every unreadable file refused with INVALID_MESSAGE."""

from __future__ import annotations

import codecs

import pytest

from chat.attachments.extract import extract, format_of
from chatlima.errors import ClientError
from tests.attachments.helpers import make_pdf


@pytest.mark.parametrize(("name", "data", "kind", "expected"), [
    ("notes.txt", b"Plain words.\nSecond line.", "text", "Plain words.\nSecond line."),
    ("README.md", "# Title\n\n* caf\u00e9 item".encode(), "markdown", "# Title\n\n* caf\u00e9 item"),
    ("main.py", b"def answer():\n    return 42\n", "code", "def answer():\n    return 42\n"),
    ("Makefile", b"test:\n\tpytest\n", "code", "test:\n\tpytest\n"),
    ("figures.csv", b"day,tokens\n2026-12-01,1200\n", "csv", "day,tokens\n2026-12-01,1200\n"),
    ("data.json", b'{"model": "gpt-4o", "tokens": [1, 2]}', "json", '{"model": "gpt-4o", "tokens": [1, 2]}'),
    ("rows.jsonl", b'{"a": 1}\n{"a": 2}\n', "json", '{"a": 1}\n{"a": 2}\n'),
])
def test_it_reads_each_text_kind(name, data, kind, expected):
    extracted = extract(name, data)
    assert (extracted.format, extracted.text) == (kind, expected)


def test_it_reads_the_text_of_a_pdf():
    extracted = extract("report.pdf", make_pdf(["Quarterly figures (draft)", "Revenue rose 12 percent"]))
    assert extracted.format == "pdf"
    assert "Quarterly figures (draft)" in extracted.text and "Revenue rose 12 percent" in extracted.text


def test_it_decodes_a_bom_and_other_encodings():
    assert extract("a.txt", codecs.BOM_UTF8 + "na\u00efve".encode()).text == "na\u00efve"
    assert extract("b.txt", codecs.BOM_UTF16_LE + "wide text".encode("utf-16-le")).text == "wide text"
    latin = "Cr\u00e8me br\u00fbl\u00e9e, fa\u00e7ade, na\u00efvet\u00e9 and r\u00e9sum\u00e9 of the caf\u00e9".encode("latin-1")
    assert "fa\u00e7ade" in extract("c.txt", latin).text


def test_it_knows_kinds_by_media_type_when_the_name_has_none():
    assert format_of("upload", "text/markdown; charset=utf-8") == "markdown"
    assert format_of("upload", "application/vnd.api+json") == "json"
    assert format_of("upload", "application/octet-stream") is None
    assert format_of("photo.png", "image/png") is None


@pytest.mark.parametrize(("name", "data", "message"), [
    ("photo.png", b"\x89PNG\r\n\x1a\n....", "cannot be attached"),
    ("notes.txt", b"text\x00with\x00NULs", "not a text file"),
    ("data.json", b'{"unclosed": ', "does not parse"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, None),  # nests too deep for the parser: unreadable, never a 500
    ("report.pdf", b"%PDF-1.4\nthis is no PDF at all", "could not be read"),
    ("scan.pdf", make_pdf([]), "no text"),
    ("blank.md", b"   \n\t\n", "no text"),
])
def test_it_refuses_what_it_cannot_read(name, data, message):
    with pytest.raises(ClientError) as refused:
        extract(name, data)
    assert refused.value.code == "INVALID_MESSAGE" and refused.value.http_status == 400
    assert refused.value.details["field"] == "file"
    if message:
        assert message in refused.value.message
