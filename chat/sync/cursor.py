"""Sync cursors: a version of the user's sync clock, and within it the last conversation sent.

`1:<version>` says "everything up to this version"; `1:<version>:<pk>` says "this version up to
this conversation", for a page that stopped inside a version. Base64url, unpadded; opaque to clients.
"""

from __future__ import annotations

import base64
import binascii

from chatlima.errors import ClientError

# A cursor names a version and a primary key, both bigint columns.
MAX_CURSOR_NUMBER = 2**63 - 1


def encode_cursor(version: int, last_pk: int | None) -> str:
    raw = f"1:{version}" if last_pk is None else f"1:{version}:{last_pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int | None]:
    """(version, last pk or None); anything this server did not issue is INVALID_MESSAGE."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        parts = raw.split(":")
        if parts[0] != "1" or len(parts) not in (2, 3):
            raise ValueError(raw)
        version = int(parts[1])
        last_pk = int(parts[2]) if len(parts) == 3 else None
        if not 0 <= version <= MAX_CURSOR_NUMBER or (last_pk is not None and not 0 <= last_pk <= MAX_CURSOR_NUMBER):
            raise ValueError(raw)
        return version, last_pk
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise ClientError("INVALID_MESSAGE", "`since` is not a cursor this server issued.", {"since": "invalid cursor"}) from exc
