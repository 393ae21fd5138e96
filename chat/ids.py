"""Client-visible ids: `conv_<epoch ms>_<9 random [a-z0-9]>` and `msg_...`, unique per user."""

from __future__ import annotations

import re
import secrets
import string
import time

from django.core.validators import RegexValidator

# The whole string, trailing newline included: Python's `$` also matches just before a final "\n".
ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
# The same rule in the OpenAPI schema's (ECMA 262) dialect, where `$` is the end of the string.
ID_SCHEMA_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
ID_RULE = "Ids are 1 to 64 letters, digits, '_' or '-'."
validate_public_id = RegexValidator(ID_PATTERN, ID_RULE)

_ALPHABET = string.ascii_lowercase + string.digits


def new_id(prefix: str) -> str:
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(9))
    return f"{prefix}_{int(time.time() * 1000)}_{suffix}"


def new_conversation_id() -> str:
    return new_id("conv")


def new_message_id() -> str:
    return new_id("msg")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
