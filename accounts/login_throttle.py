"""Failed-login lockouts, for every door that checks a password (accounts.backends runs them).

The counts live in the shared cache (settings.CACHES["default"]: Redis, or the database), so every
server process and machine sees the same ones. Two scopes, each with its own limit:

* an account: its canonical username (accounts.models.canonical_username, the spelling identity and
  sign-up use too, so 'victim ', ' victim', 'victim\\t' and 'VICTIM' are one account), from any
  address: CHATLIMA_LOGIN_MAX_FAILURES (10);
* a client address (`client_address`), whatever usernames it tries: CHATLIMA_LOGIN_ADDRESS_MAX_FAILURES (20).

An attempt is counted before its password is checked (the cache's atomic add and incr), so parallel
guesses cannot all slip under the limit together; a successful one takes its count back and clears
its account's. A scope's count lasts CHATLIMA_LOGIN_LOCKOUT_SECONDS (900) from its first attempt. The
attempt that fails at the limit, or any attempt past it, locks the scope for
CHATLIMA_LOGIN_LOCKOUT_SECONDS from then: every attempt is refused, right password or not, and told
how long is left.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts.models import canonical_username

_REFUSAL_ATTRIBUTE = "_chatlima_login_lockout"


def client_address(request: HttpRequest | None) -> str | None:
    """The address lockouts and DRF's throttles count: REMOTE_ADDR, which a proxy in front must set.

    X-Forwarded-For is trusted only with CHATLIMA_TRUSTED_PROXIES = N (N proxies append to it): then
    its Nth address from the right, as DRF's NUM_PROXIES reads it.
    """
    if request is None:
        return None
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.CHATLIMA_TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies > 0 and forwarded:
        addresses = forwarded.split(",")
        return addresses[-min(proxies, len(addresses))].strip() or remote
    return remote


class LockedOut(PermissionDenied):
    """A login refused by a lockout: which scope, and how many seconds it has left.

    A PermissionDenied, so django.contrib.auth.authenticate() stops at it and answers None.
    """

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(scope, retry_after)
        self.scope = scope  # "account" or "address"
        self.retry_after = retry_after

    @property
    def message(self) -> str:
        if self.retry_after >= 60:
            minutes = math.ceil(self.retry_after / 60)
            wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
        else:
            wait = f"{self.retry_after} second{'s' if self.retry_after != 1 else ''}"
        whose = "this account" if self.scope == "account" else "your address"
        return f"Too many failed attempts for {whose}: logins are locked for {wait}. Try again then."

    def details(self) -> dict:
        return {"retry_after": self.retry_after, "scope": self.scope}


@dataclass(frozen=True)
class _Scope:
    name: str
    limit: int
    key: str

    @property
    def lock_key(self) -> str:
        return f"{self.key}:locked-until"


def _scopes(username: str, address: str | None) -> list[_Scope]:
    def key(kind: str, value: str) -> str:
        # Hashed: usernames may hold characters a cache key must not.
        return f"login-failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()}"

    scopes = [_Scope("account", settings.CHATLIMA_LOGIN_MAX_FAILURES, key("account", canonical_username(username)))]
    if address:
        scopes.append(_Scope("address", settings.CHATLIMA_LOGIN_ADDRESS_MAX_FAILURES, key("address", address)))
    return scopes


def _lock(scope: _Scope, now: float) -> LockedOut:
    """Lock a scope from now (unless it is locked already) and say how long is left."""
    seconds = settings.CHATLIMA_LOGIN_LOCKOUT_SECONDS
    cache.add(scope.lock_key, now + seconds, seconds)
    until = cache.get(scope.lock_key) or now + seconds
    return LockedOut(scope.name, max(1, math.ceil(until - now)))


def _count(scope: _Scope) -> int:
    window = settings.CHATLIMA_LOGIN_LOCKOUT_SECONDS
    for _ in range(2):
        cache.add(scope.key, 0, window)
        try:
            return cache.incr(scope.key)
        except ValueError:  # it expired between the two calls: start it again
            continue
    return cache.incr(scope.key)


def _uncount(scope: _Scope) -> None:
    try:
        cache.decr(scope.key)
    except ValueError:  # already expired
        pass


def begin(username: str, address: str | None) -> Attempt:
    """Count a login attempt against its account and address before its password is checked.

    Raises LockedOut, counting nothing, when either is locked or this attempt would pass a limit.
    No database transaction and no lock: each count is one atomic operation on the shared cache
    (add, incr), and nothing is held while the password hash is checked.
    """
    now = time.time()
    scopes = _scopes(username, address)
    locks = cache.get_many([scope.lock_key for scope in scopes])
    for scope in scopes:
        until = locks.get(scope.lock_key)
        if until is not None and until > now:
            raise LockedOut(scope.name, max(1, math.ceil(until - now)))
    counted: list[tuple[_Scope, int]] = []
    for scope in scopes:
        number = _count(scope)
        if number > scope.limit:
            for done, _ in [*counted, (scope, number)]:
                _uncount(done)
            raise _lock(scope, now)
        counted.append((scope, number))
    return Attempt(now, counted)


@dataclass(frozen=True)
class Attempt:
    """One counted login attempt; the door says how it ended."""

    now: float
    counted: list[tuple[_Scope, int]]

    def failed(self) -> None:
        """The password was wrong: the attempt stays counted, and one at a scope's limit locks it."""
        for scope, number in self.counted:
            if number >= scope.limit:
                _lock(scope, self.now)

    def succeeded(self) -> None:
        """The password was right: its account starts again from zero, its address takes this one back."""
        for scope, _ in self.counted:
            if scope.name == "account":
                cache.delete(scope.key)
            else:
                _uncount(scope)


def refuse(request: HttpRequest | None, locked: LockedOut) -> None:
    """Remember on the request why authenticate() said no, for the door to tell the client."""
    if request is not None:
        setattr(request, _REFUSAL_ATTRIBUTE, locked)


def lockout_of(request: HttpRequest | None) -> LockedOut | None:
    """The lockout that refused this request's login, if one did."""
    return getattr(request, _REFUSAL_ATTRIBUTE, None)
