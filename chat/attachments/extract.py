"""The text of an attached file, by its kind: plain text, Markdown, code, CSV, JSON or PDF.

Pure functions, no database. Everything that cannot be read is refused with INVALID_MESSAGE
(naming the field) before anything is stored: a kind not on the list, bytes that are not text, a
JSON file that does not parse, a PDF pypdf cannot open or that holds no text. Text is decoded as
UTF-8 (a BOM is honoured) and otherwise as charset-normalizer finds it; PDF text comes from pypdf.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

import charset_normalizer
import pypdf
from pypdf.errors import PyPdfError

from chatlima.errors import ClientError
from chatlima.text import is_blank, unstorable_character

logger = logging.getLogger(__name__)

CODE_SUFFIXES = frozenset(
    ".py .pyi .js .mjs .cjs .ts .tsx .jsx .java .kt .kts .scala .go .rs .c .h .cc .cpp .cxx .hpp .hh .cs .fs "
    ".swift .m .mm .rb .php .pl .pm .lua .r .jl .dart .ex .exs .erl .hs .ml .clj .sh .bash .zsh .fish .ps1 .bat "
    ".sql .html .htm .css .scss .less .vue .svelte .xml .yaml .yml .toml .ini .cfg .conf .env .properties "
    ".gradle .cmake .mk .dockerfile .proto .graphql .tf .nix .vim .el .lisp .scm .rst .tex .diff .patch".split()
)
CODE_NAMES = frozenset({"makefile", "dockerfile", "gemfile", "rakefile", "procfile", "justfile"})
FORMAT_FOR_SUFFIX = {
    ".txt": "text", ".text": "text", ".log": "text",
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown",
    ".csv": "csv", ".tsv": "csv",
    ".json": "json", ".jsonl": "json", ".ndjson": "json", ".geojson": "json",
    ".pdf": "pdf",
}
FORMAT_FOR_TYPE = {
    "text/plain": "text", "text/markdown": "markdown", "text/x-markdown": "markdown", "text/csv": "csv",
    "text/tab-separated-values": "csv", "application/json": "json", "application/pdf": "pdf",
    "text/html": "html", "application/xhtml+xml": "html",
}
SUPPORTED = "text, Markdown, code, CSV, JSON or PDF"
_SURROGATES_AND_NUL = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Extracted:
    text: str
    format: str  # text, markdown, code, csv, json, pdf or html


def storable(text: str) -> str:
    """`text` without the characters no column can store (NUL, lone surrogates)."""
    return _SURROGATES_AND_NUL.sub("", text)


def unreadable(message: str, field: str = "file", **details) -> ClientError:
    return ClientError("INVALID_MESSAGE", message, {"field": field, **details})


def format_of(name: str, content_type: str = "") -> str | None:
    """The kind of a file from its name, else from its media type; None: not one we read."""
    path = PurePosixPath(name.lower())
    suffix = path.suffix
    if suffix in FORMAT_FOR_SUFFIX:
        return FORMAT_FOR_SUFFIX[suffix]
    if suffix in CODE_SUFFIXES or path.name in CODE_NAMES:
        return "code"
    media = content_type.split(";")[0].strip().lower()
    if media in FORMAT_FOR_TYPE and FORMAT_FOR_TYPE[media] != "html":
        return FORMAT_FOR_TYPE[media]
    if media.endswith(("+json", "/json")):
        return "json"
    if media.startswith("text/"):
        return "text"
    return None


def decode_text(data: bytes, charset: str | None = None, field: str = "file") -> str:
    """Bytes as text: the declared charset, else UTF-8 (BOM honoured), else what
    charset-normalizer finds. Binary data (NUL bytes outside a UTF-16/32 BOM) is refused."""
    has_wide_bom = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE))
    if b"\x00" in data and not has_wide_bom:
        raise unreadable("This is not a text file.", field)
    text = None
    if charset:
        try:
            text = data.decode(charset)
        except (LookupError, UnicodeDecodeError):
            text = None
    if text is None:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            best = charset_normalizer.from_bytes(data).best()
            if best is None:
                raise unreadable("This file's text encoding could not be read.", field) from None
            text = str(best)
    if unstorable_character(text) is not None:
        raise unreadable("This is not a text file.", field)
    return text.removeprefix("\ufeff")


def pdf_text(data: bytes, field: str = "file") -> str:
    """The text of every page, with pypdf; an unreadable or encrypted PDF, or one with no text
    (a scan), is refused."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise unreadable("This PDF is protected by a password.", field)
        pages = [page.extract_text() or "" for page in reader.pages]
    except ClientError:
        raise
    except (PyPdfError, Exception) as exc:  # noqa: BLE001 - pypdf raises many kinds of error on a malformed file
        logger.info("unreadable PDF: %s", exc)
        raise unreadable("This PDF could not be read.", field) from None
    text = _SURROGATES_AND_NUL.sub("", "\n\n".join(p.strip() for p in pages if p.strip()))
    if is_blank(text):
        raise unreadable("This PDF has no text to read (a scanned PDF?).", field)
    return text


def extract(name: str, data: bytes, content_type: str = "") -> Extracted:
    """The text of the file `name` holding `data`, as its kind reads; raises INVALID_MESSAGE."""
    kind = format_of(name, content_type)
    if kind is None:
        raise unreadable(f"Files of this kind cannot be attached; attach {SUPPORTED}.", supported=SUPPORTED)
    return extract_as(kind, data)


def extract_as(kind: str, data: bytes, charset: str | None = None, field: str = "file") -> Extracted:
    """The text of `data` read as `kind` (html only for fetched pages: chat.attachments.fetch)."""
    if kind == "pdf":
        return Extracted(pdf_text(data, field), kind)
    text = decode_text(data, charset, field)
    if kind == "json" and not parses_as_json(text):
        raise unreadable("This JSON file does not parse.", field)
    if kind == "html":
        text = readable_html(text)
    if is_blank(text):
        raise unreadable("There is no text to attach.", field)
    return Extracted(text, kind)


def parses_as_json(text: str) -> bool:
    """One JSON document, or JSON Lines (one document a line, as .jsonl files hold). Nesting too
    deep for the parser is as unreadable as a syntax error."""
    try:
        json.loads(text)
        return True
    except (ValueError, RecursionError):
        pass
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        for line in lines:
            json.loads(line)
    except (ValueError, RecursionError):
        return False
    return len(lines) > 1


def readable_html(html: str) -> str:
    """A web page's readable text (its main content, without navigation and boilerplate) by
    trafilatura; a page it finds nothing in gives its whole text instead."""
    import trafilatura  # imported on first use: it loads a good deal

    text = trafilatura.extract(html, include_comments=False, include_tables=True, favor_recall=True)
    if not text:
        text = trafilatura.html2txt(html) or ""
    return _SURROGATES_AND_NUL.sub("", text).strip()


def html_title(html: str) -> str:
    """A page's title, by trafilatura's metadata reader; empty when it has none."""
    import trafilatura

    metadata = trafilatura.extract_metadata(html)
    return (metadata.title or "").strip() if metadata is not None else ""
