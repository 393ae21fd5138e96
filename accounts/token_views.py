"""The user's API tokens: `GET /api/v1/auth/tokens`, `PATCH` and `DELETE /api/v1/auth/tokens/<id>`
(README "API tokens"). A stranger's token is 404, as everywhere."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import tokens
from accounts.models import ApiToken
from chatlima.errors import ClientError
from chatlima.formats import money_str, utc_iso

ApiTokenSerializer = inline_serializer("ApiToken", many=False, fields={
    "id": serializers.IntegerField(), "name": serializers.CharField(), "label": serializers.CharField(),
    "token_key": serializers.CharField(help_text="The token's first characters (not secret)."),
    "created_at": serializers.DateTimeField(), "expiry": serializers.DateTimeField(allow_null=True),
    "revoked_at": serializers.DateTimeField(allow_null=True), "current": serializers.BooleanField(),
    "token_limit": serializers.IntegerField(allow_null=True), "cost_limit": serializers.CharField(allow_null=True),
})


def token_payload(token: ApiToken, current: AuthToken | None = None) -> dict:
    auth = token.auth_token
    return {
        "id": token.pk, "name": token.name, "label": token.label, "token_key": token.token_key[:8],
        "created_at": utc_iso(token.created_at), "expiry": utc_iso(auth.expiry) if auth else None,
        "revoked_at": utc_iso(token.revoked_at), "current": bool(current and auth and auth.pk == current.pk),
        "token_limit": token.token_limit, "cost_limit": money_str(token.cost_limit),
    }


@extend_schema(responses=inline_serializer("ApiTokenList", {"results": serializers.ListField(child=ApiTokenSerializer)}))
@api_view(["GET"])
def token_list(request: Request) -> Response:
    """The user's live tokens (revoked ones with `?revoked=1`), newest first."""
    current = request.auth if isinstance(request.auth, AuthToken) else None
    if current is not None:
        tokens.named_token(current)
    rows = ApiToken.objects.for_user(request.user).select_related("auth_token")
    if request.query_params.get("revoked") != "1":
        rows = rows.live()
    return Response({"results": [token_payload(t, current) for t in rows]})


@extend_schema(request=inline_serializer("ApiTokenChange", {
    "name": serializers.CharField(required=False), "token_limit": serializers.IntegerField(required=False, allow_null=True),
    "cost_limit": serializers.CharField(required=False, allow_null=True),
}), responses={200: ApiTokenSerializer, 204: None})
@api_view(["PATCH", "DELETE"])
def token_detail(request: Request, token_id: str) -> Response:
    """Rename a token or set its own budget (PATCH), or revoke it (DELETE)."""
    token = tokens.owned_token(request.user, token_id)
    if request.method == "DELETE":
        tokens.revoke(token)
        return Response(status=status.HTTP_204_NO_CONTENT)
    if not isinstance(request.data, dict):
        raise ClientError("INVALID_MESSAGE", "The body must be a JSON object.", {"field": "body"})
    tokens.update_token(token, request.data)
    token.refresh_from_db()
    current = request.auth if isinstance(request.auth, AuthToken) else None
    return Response(token_payload(token, current))
