"""What a text field may hold, for the server and for the OpenAPI schema alike.

No field stores a NUL (PostgreSQL text cannot hold one) or a lone surrogate (no backend can encode
one as UTF-8; JSON lets a client send one as "\\ud800"). "Blank" is what `str.strip()` strips. The
`*_PATTERN` strings say the same in the schema's regex dialect (ECMA 262, which Python's `re` and
the Rust `regex` crate read alike for these), so a fuzzer that follows the schema and the server
agree on every string.
"""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Every character str.isspace() calls whitespace, spelled out: `\s` differs between regex dialects.
_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
_WHITESPACE_CLASS = "".join(f"\\u{ord(c):04x}" for c in _WHITESPACE)

# The schema's string rules (JSON Schema `pattern`), anchored and unambiguous so that generating
# and checking long strings stays linear: no NUL; no NUL and not blank.
NO_NUL_PATTERN = "^[^\\u0000]*$"
NOT_BLANK_PATTERN = f"^[{_WHITESPACE_CLASS}]*[^{_WHITESPACE_CLASS}\\u0000][^\\u0000]*$"


def unstorable_character(text: str) -> str | None:
    """A description of the first character no column can store, or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "a NUL character" if found.group() == "\x00" else f"a lone surrogate (U+{ord(found.group()):04X})"


def is_blank(text: str) -> bool:
    return not text.strip()
