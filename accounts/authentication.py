from __future__ import annotations

from knox.auth import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """Knox tokens (hashed, per device, expiring) sent as `Authorization: Bearer <token>`."""

    def authenticate_header(self, request) -> str:
        return "Bearer"
