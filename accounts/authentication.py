"""Bearer tokens: knox's tokens (hashed, per device, expiring), checked in one read per request."""

from __future__ import annotations

import binascii
from functools import lru_cache
from hmac import compare_digest

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import get_token_model
from knox.settings import CONSTANTS, knox_settings
from knox.signals import token_expired
from rest_framework import exceptions

from accounts.models import ApiToken, User
from chatlima.rows import from_row, select_list


@lru_cache(maxsize=4)
def _candidates_sql(vendor: str) -> str:
    """`AuthToken.objects.filter(token_key=...).select_related("user", "named")` as one literal
    statement: compiling that queryset (two joins) was most of a Bearer check's CPU (0.8 ms here)."""
    token = get_token_model()
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    named_fk = ApiToken._meta.get_field("auth_token")
    return (
        f"SELECT {select_list(token, 't')}, {select_list(User, 'u')}, {select_list(ApiToken, 'n')} "
        f"FROM {quote(token._meta.db_table)} t "
        f"JOIN {quote(User._meta.db_table)} u ON u.{quote(User._meta.pk.column)} = t.{quote(token._meta.get_field('user').column)} "
        f"LEFT JOIN {quote(ApiToken._meta.db_table)} n ON n.{quote(named_fk.column)} = t.{quote(token._meta.pk.column)} "
        f"WHERE t.{quote(token._meta.get_field('token_key').column)} = %s"
    )


def _candidates(token_key: str) -> list:
    """The knox tokens with this key, each with its user and its name (None if it has none) cached
    on it, as select_related leaves them."""
    token_model = get_token_model()
    db = connections[DEFAULT_DB_ALIAS]
    user_at = len(token_model._meta.concrete_fields)
    named_at = user_at + len(User._meta.concrete_fields)
    to_user, to_token = token_model._meta.get_field("user"), ApiToken._meta.get_field("auth_token")
    with db.cursor() as cursor:
        cursor.execute(_candidates_sql(db.vendor), [token_key])
        rows = cursor.fetchall()
    found = []
    for row in rows:
        auth_token = from_row(token_model, row[:user_at], db)
        named = from_row(ApiToken, row[named_at:], db) if row[named_at] is not None else None
        to_user.set_cached_value(auth_token, from_row(User, row[user_at:named_at], db))
        to_token.remote_field.set_cached_value(auth_token, named)
        if named is not None:
            to_token.set_cached_value(named, auth_token)
        found.append(auth_token)
    return found


class BearerTokenAuthentication(TokenAuthentication):
    """Knox tokens sent as `Authorization: Bearer <token>`.

    Knox's own check reads the tokens with the token's key, then every other token of the user (to
    delete the expired ones, on every request), and the doors then read the token's name: three
    reads per request. This one reads the tokens with the key together with their user and name
    in one literal statement (`_candidates`; `named`, which `accounts.tokens.named_token` then finds
    without a query); an expired token is still deleted and refused when it is used, and the user's
    other expired tokens are deleted once a day (`accounts.tokens.delete_expired_tokens`, a Celery
    beat task) instead of per request.
    """

    def authenticate_header(self, request) -> str:
        return "Bearer"

    def authenticate_credentials(self, token: bytes):
        refused = exceptions.AuthenticationFailed("Invalid token.")
        text = token.decode("utf-8")
        now = timezone.now()
        for auth_token in _candidates(text[:CONSTANTS.TOKEN_KEY_LENGTH]):
            if auth_token.expiry is not None and auth_token.expiry < now:
                username = auth_token.user.get_username()
                auth_token.delete()
                token_expired.send(sender=self.__class__, username=username, source="auth_token")
                continue
            try:
                digest = hash_token(text)
            except (TypeError, binascii.Error):
                raise refused from None
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                return self.validate_user(auth_token)
        raise refused
