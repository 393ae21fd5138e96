"""Failed-login throttling shared by the login page and the token endpoint."""

from __future__ import annotations

from django.core.cache import cache

MAX_FAILURES = 10
WINDOW_SECONDS = 300


def _key(username: str, ip: str | None) -> str:
    return f"login-failures:{(username or '').lower()}:{ip or '-'}"


def is_locked(username: str, ip: str | None) -> bool:
    return cache.get(_key(username, ip), 0) >= MAX_FAILURES


def record_failure(username: str, ip: str | None) -> None:
    key = _key(username, ip)
    cache.add(key, 0, WINDOW_SECONDS)
    cache.incr(key)


def clear(username: str, ip: str | None) -> None:
    cache.delete(_key(username, ip))
