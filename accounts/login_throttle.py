"""Failed-login throttling shared by the login page and the token endpoint."""

from __future__ import annotations

import hashlib

from django.core.cache import cache

MAX_FAILURES = 10
WINDOW_SECONDS = 300


def _key(username: str, ip: str | None) -> str:
    # Hashed: usernames may hold characters a cache key must not.
    digest = hashlib.sha256(f"{(username or '').lower()}|{ip or '-'}".encode()).hexdigest()
    return f"login-failures:{digest}"


def is_locked(username: str, ip: str | None) -> bool:
    return cache.get(_key(username, ip), 0) >= MAX_FAILURES


def record_failure(username: str, ip: str | None) -> None:
    key = _key(username, ip)
    cache.add(key, 0, WINDOW_SECONDS)
    cache.incr(key)


def clear(username: str, ip: str | None) -> None:
    cache.delete(_key(username, ip))
