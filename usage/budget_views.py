"""GET /api/v1/budget: the caller's budget for the current period."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from usage.budgets import budget_payload


@extend_schema(responses=OpenApiTypes.OBJECT, summary="The caller's budget for the current period")
@api_view(["GET"])
def budget(request: Request) -> Response:
    return Response(budget_payload(request.user))
