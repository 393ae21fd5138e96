"""Named API tokens: issuing one (with its name), finding the name of the one a request came with,
listing, renaming, limiting and revoking them. Each function is its own short transaction."""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone
from knox.models import AuthToken

from accounts.models import ApiToken, User
from chatlima.errors import ClientError

NAME_CHARS = 100


def clean_name(name) -> str:
    """A token's name: text of at most NAME_CHARS, stripped; INVALID_MESSAGE otherwise."""
    if name is None:
        return ""
    if not isinstance(name, str) or "\x00" in name:
        raise ClientError("INVALID_MESSAGE", "name must be text.", {"field": "name"})
    name = name.strip()
    if len(name) > NAME_CHARS:
        raise ClientError("INVALID_MESSAGE", f"name is over {NAME_CHARS} characters.", {"field": "name"})
    return name


def issue_token(user: User, name: str = "") -> tuple[ApiToken, str]:
    """A new knox token and its name, in one transaction; returns the row and the secret (shown once)."""
    with transaction.atomic():
        instance, secret = AuthToken.objects.create(user)
        named = ApiToken.objects.create(user=user, name=name, token_key=instance.token_key, auth_token=instance)
    return named, secret


def named_token(auth_token: AuthToken) -> ApiToken:
    """The ApiToken naming a knox token; a token issued before names existed gets an unnamed one.
    No query when the token was read with its name (accounts.authentication selects it)."""
    try:
        return auth_token.named
    except ApiToken.DoesNotExist:
        pass
    try:
        with transaction.atomic():
            return ApiToken.objects.create(user_id=auth_token.user_id, token_key=auth_token.token_key,
                                           auth_token=auth_token)
    except IntegrityError:  # a parallel request named it first
        return ApiToken.objects.get(auth_token=auth_token)


def owned_token(user: User, token_id) -> ApiToken:
    """One of the user's tokens; another's, or none, is NOT_FOUND."""
    try:
        pk = int(token_id)
    except (TypeError, ValueError):
        pk = None
    found = ApiToken.objects.for_user(user).filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise ClientError("NOT_FOUND", "No such API token.", {"token_id": str(token_id)})
    return found


def revoke(token: ApiToken) -> None:
    """Revoke a token: its knox token is deleted (so it no longer authenticates), its name stays for
    the usage it recorded. One transaction; the row lock of the token's row."""
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.auth_token_id is not None:
            AuthToken.objects.filter(pk=locked.auth_token_id).delete()
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=locked.revoked_at or timezone.now(), auth_token=None)


def _limit(value, field: str, kind: type):
    if value is None:
        return None
    try:
        parsed = kind(str(value)) if kind is Decimal else value
    except ArithmeticError:
        parsed = None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        parsed = None
    if kind is Decimal and parsed is not None and (not parsed.is_finite() or parsed >= Decimal("1e8")):
        parsed = None
    if parsed is None or parsed < 0:
        raise ClientError("INVALID_MESSAGE", f"{field} must be a non-negative number or null.", {"field": field})
    return parsed


def update_token(token: ApiToken, changes: dict) -> ApiToken:
    """Rename a token or set its own budget (`token_limit`, `cost_limit`; null: only the user's)."""
    fields = {}
    if "name" in changes:
        fields["name"] = clean_name(changes["name"])
    if "token_limit" in changes:
        fields["token_limit"] = _limit(changes["token_limit"], "token_limit", int)
    if "cost_limit" in changes:
        fields["cost_limit"] = _limit(changes["cost_limit"], "cost_limit", Decimal)
    if fields:
        ApiToken.objects.filter(pk=token.pk).update(**fields)
        for key, value in fields.items():
            setattr(token, key, value)
    return token


def token_by_digest(digest: str) -> ApiToken | None:
    """The named token of a knox token's digest (a WebSocket's credential), None once revoked."""
    auth_token = AuthToken.objects.filter(pk=digest).select_related("named").first()  # the name in the same read
    return None if auth_token is None else named_token(auth_token)


def delete_expired_tokens(now=None) -> int:
    """Delete every knox token past its expiry (they no longer authenticate; their names stay, as a
    revoked token's do, for the usage they recorded). One statement, its own transaction; run daily
    by Celery beat (`accounts.delete_expired_tokens`). Returns how many were deleted."""
    return AuthToken.objects.filter(expiry__lt=now or timezone.now()).delete()[1].get(AuthToken._meta.label, 0)
