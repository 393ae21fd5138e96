"""`GET /api/v1/token-usage`: the account's, or one conversation's, running token and cost totals.

The figures are the conversations' own running totals (chat.models keeps them, in the same
transaction as each exchange's usage row), so this reads chat's models: it lives in chat.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.db.models.functions import Coalesce
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from chat.ids import ID_SCHEMA_PATTERN, is_valid_id
from chat.models import Conversation
from chat.serializers import ErrorSerializer
from chatlima.errors import ClientError
from chatlima.formats import money_str
from chatlima.params import query_param


class TokenUsageSerializer(serializers.Serializer):
    total_input_tokens = serializers.IntegerField()
    total_output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_reasoning_tokens = serializers.IntegerField()
    total_cached_tokens = serializers.IntegerField()
    total_estimated_cost = serializers.CharField()
    total_actual_cost = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    message_count = serializers.IntegerField()



def token_usage_figures(user, conversation: Conversation | None = None) -> dict[str, Any]:
    """Totals from the conversations' running figures; account-wide includes deleted conversations,
    since what they used was still used."""
    if conversation is not None:
        sums = {
            "i": conversation.input_tokens, "o": conversation.output_tokens, "t": conversation.total_tokens,
            "r": conversation.reasoning_tokens, "c": conversation.cached_tokens, "cost": conversation.estimated_cost,
            "actual": conversation.actual_cost, "n": conversation.message_count,
        }
    else:
        sums = Conversation.objects.filter(owner=user).aggregate(
            i=Coalesce(Sum("input_tokens"), 0), o=Coalesce(Sum("output_tokens"), 0), t=Coalesce(Sum("total_tokens"), 0),
            r=Coalesce(Sum("reasoning_tokens"), 0), c=Coalesce(Sum("cached_tokens"), 0),
            cost=Sum("estimated_cost"), actual=Sum("actual_cost"), n=Coalesce(Sum("message_count"), 0),
        )
    return {
        "total_input_tokens": sums["i"],
        "total_output_tokens": sums["o"],
        "total_tokens": sums["t"],
        "total_reasoning_tokens": sums["r"],
        "total_cached_tokens": sums["c"],
        "total_estimated_cost": money_str(sums["cost"] if sums["cost"] is not None else Decimal("0")),
        "total_actual_cost": money_str(sums["actual"]),
        "currency": "USD",
        "message_count": sums["n"],
    }



@extend_schema(
    operation_id="token_usage",
    parameters=[OpenApiParameter(
        "conversation_id", OpenApiTypes.STR, pattern=ID_SCHEMA_PATTERN, description="One conversation; absent: the whole account.",
    )],
    responses={200: TokenUsageSerializer, 
               400: OpenApiResponse(ErrorSerializer, description="INVALID_MESSAGE: not an id"),
               401: OpenApiResponse(ErrorSerializer, description="UNAUTHENTICATED"),
               404: OpenApiResponse(ErrorSerializer, description="CONVERSATION_NOT_FOUND"),
               429: OpenApiResponse(ErrorSerializer, description="RATE_LIMITED")},
)
@api_view(["GET"])
def token_usage(request: Request) -> Response:
    conversation = None
    conversation_id = query_param(request, "conversation_id")
    if conversation_id is not None:
        if not is_valid_id(conversation_id):
            raise ClientError("INVALID_MESSAGE", "`conversation_id` is not an id.", {"conversation_id": "invalid id"})
        conversation = Conversation.objects.for_user(request.user).filter(public_id=conversation_id).first()
        if conversation is None:
            raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.")
    return Response(token_usage_figures(request.user, conversation))


