"""Operations: health of the parts the app needs, and staff-only totals across the apps.

In chatlima, the layer that wires the apps together: the totals count chat's conversations and
usage's rows, so neither app has to know the other's models."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import DecimalField, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from chat.models import Conversation, Message
from chatlima.formats import money_str
from usage import tokens
from usage.models import ApiUsageLog

logger = logging.getLogger(__name__)
CHECK_TIMEOUT_SECONDS = 3.0


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


async def _check_channel_layer() -> str:
    """A real round trip: send a message to a fresh channel on the configured layer and read it back."""
    layer = get_channel_layer()
    if layer is None:
        return "not configured"
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    return "ok" if message.get("type") == "health.ping" else "error"


async def _check_broker() -> str:
    if not settings.REDIS_URL:
        return "not configured"
    import redis.asyncio as aioredis

    client = aioredis.from_url(settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        return "ok" if await client.ping() else "error"
    finally:
        await client.aclose()


async def _run(name: str, check) -> str:
    try:
        return await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure of a part is that part's "error"
        logger.warning("health check %s failed: %s", name, exc)
        return "error"


@never_cache
@require_GET
async def health(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": await _run("database", sync_to_async(_check_database)),
        "channel_layer": await _run("channel_layer", _check_channel_layer),
        "broker": await _run("broker", _check_broker),
    }
    healthy = all(value in ("ok", "not configured") for value in checks.values())
    return JsonResponse(
        {"status": "healthy" if healthy else "unhealthy", "checks": checks}, status=200 if healthy else 503
    )


_CACHE_STATS = {"hits": serializers.IntegerField(), "misses": serializers.IntegerField(), "entries": serializers.IntegerField()}
StatsSerializer = inline_serializer(
    "OperationsStats",
    {
        **{name: serializers.IntegerField() for name in (
            "users", "conversations", "messages", "requests",
            "total_prompt_tokens", "total_completion_tokens", "total_tokens",
        )},
        "total_estimated_cost": serializers.CharField(),
        "total_actual_cost": serializers.CharField(allow_null=True),
        "currency": serializers.CharField(),
        "token_cache": inline_serializer("TokenCacheStats", _CACHE_STATS),
        **_CACHE_STATS,
    },
)


@extend_schema(responses=StatsSerializer)
@api_view(["GET"])
@permission_classes([IsAdminUser])
def stats(request: Request) -> Response:
    """Totals across all users (staff only), with the token-count cache's figures."""
    money = DecimalField(max_digits=20, decimal_places=8)
    usage = ApiUsageLog.objects.aggregate(
        requests=ApiUsageLog.outcome_counts()["requests"],
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        total_tokens=Coalesce(Sum("total_tokens"), 0),
        cost=Coalesce(Sum("cost_estimate"), Value(Decimal("0")), output_field=money),
        actual_cost=Sum("actual_cost"),
    )
    cache = tokens.cache_stats()
    return Response(
        {
            "users": get_user_model().objects.count(),
            "conversations": Conversation.objects.filter(deleted_at__isnull=True).count(),
            "messages": Message.objects.count(),
            "requests": usage["requests"],
            "total_prompt_tokens": usage["prompt_tokens"],
            "total_completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "total_estimated_cost": money_str(usage["cost"]),
            "total_actual_cost": money_str(usage["actual_cost"]),
            "currency": "USD",
            "token_cache": {"hits": cache["hits"], "misses": cache["misses"], "entries": cache["entries"]},
            "hits": cache["hits"],
            "misses": cache["misses"],
            "entries": cache["entries"],
        }
    )
