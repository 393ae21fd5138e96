"""Bearer tokens: knox's tokens (hashed, per device, expiring), checked in one read per request."""

from __future__ import annotations

import binascii
from hmac import compare_digest

from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import get_token_model
from knox.settings import CONSTANTS, knox_settings
from knox.signals import token_expired
from rest_framework import exceptions


class BearerTokenAuthentication(TokenAuthentication):
    """Knox tokens sent as `Authorization: Bearer <token>`.

    Knox's own check reads the tokens with the token's key, then every other token of the user (to
    delete the expired ones, on every request), and the doors then read the token's name: three
    reads per request. This one reads the tokens with the key together with their user and name
    (`named`, which `accounts.tokens.named_token` then finds without a query); an expired token is
    still deleted and refused when it is used, and the user's other expired tokens are deleted once
    a day (`accounts.tokens.delete_expired_tokens`, a Celery beat task) instead of per request.
    """

    def authenticate_header(self, request) -> str:
        return "Bearer"

    def authenticate_credentials(self, token: bytes):
        refused = exceptions.AuthenticationFailed("Invalid token.")
        text = token.decode("utf-8")
        now = timezone.now()
        candidates = get_token_model().objects.filter(
            token_key=text[:CONSTANTS.TOKEN_KEY_LENGTH]).select_related("user", "named")
        for auth_token in candidates:
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
