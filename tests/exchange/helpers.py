"""Small helpers shared by the exchange tests."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from chat.exchange import start_exchange
from chat.models import Message
from usage.models import ApiUsageLog, Budget, BudgetReservation


async def run(user, body: dict[str, Any]) -> list[dict]:
    exchange = await start_exchange(user, body)
    return [event async for event in exchange.events()]


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


@database_sync_to_async
def rows(user, **filters) -> list[ApiUsageLog]:
    return list(ApiUsageLog.objects.filter(user=user, **filters).order_by("created_at"))


@database_sync_to_async
def message(user, public_id: str) -> Message:
    return Message.objects.select_related("user_message", "conversation").get(owner=user, public_id=public_id)


@database_sync_to_async
def budget(user) -> Budget:
    return Budget.objects.get(user=user)


@database_sync_to_async
def holds(user, state: str = "held") -> int:
    return BudgetReservation.objects.filter(user=user, state=state).count()


@database_sync_to_async
def set_limit(user, tokens: int | None) -> None:
    Budget.objects.filter(user=user).update(token_limit=tokens)
