"""WebSocket authentication: the browser's session, or `?token=` for other clients."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions

from accounts.authentication import BearerTokenAuthentication


@database_sync_to_async
def user_for_token(token: str):
    try:
        user, _ = BearerTokenAuthentication().authenticate_credentials(token.encode())
    except exceptions.AuthenticationFailed:
        return AnonymousUser()
    return user


class _TokenAuthMiddleware(AuthMiddleware):
    async def resolve_scope(self, scope) -> None:
        token = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
        if token:
            scope["user"]._wrapped = await user_for_token(token)
        else:
            await super().resolve_scope(scope)


def TokenOrSessionAuthMiddleware(inner):  # noqa: N802 - mirrors channels' AuthMiddlewareStack
    return CookieMiddleware(SessionMiddleware(_TokenAuthMiddleware(inner)))
