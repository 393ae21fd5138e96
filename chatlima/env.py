"""Reading the environment for chatlima/settings.py: each helper parses one kind of value, and a
value that does not parse stops the start with ImproperlyConfigured naming the variable."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ImproperlyConfigured


def env(name: str, default: str = "") -> str:
    """A string; unset or empty means the default."""
    return os.environ.get(name) or default


def bad_value(name: str, value: str, wanted: str) -> ImproperlyConfigured:
    """The error for a variable whose value is not what it must be."""
    return ImproperlyConfigured(f"{name}={value!r} is not {wanted}")


def envbool(name: str, default: bool) -> bool:
    """1/true/yes/on or 0/false/no/off; anything else stops the start (a typo must not flip a switch)."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise bad_value(name, value, "a boolean (1/0, true/false, yes/no, on/off)")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise bad_value(name, value, "a whole number") from None


def envlimit(name: str, default: int | None) -> int | None:
    """A whole number, or None (unlimited) when the variable is set but empty."""
    value = os.environ.get(name)
    if value is None:
        return default
    return envint(name, 0) if value.strip() else None


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise bad_value(name, value, "a number") from None


def envdecimal(name: str, default: Decimal | None) -> Decimal | None:
    """A Decimal, or None (unlimited) when the variable is set but empty."""
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.strip():
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        raise bad_value(name, value, "a decimal number") from None
