"""Exchanges a restart left behind: a stream that never got to settle is settled as `interrupted`,
charged what its server last saved (chat.partials keeps the partial answer and a heartbeat)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chat.exchange.settle import Outcome, SettleTarget, settle_exchange
from chat.models import Message
from chat.providers import base
from chat.providers.base import Usage
from usage.models import ApiUsageLog
from usage.tokens import count_tokens

S = ApiUsageLog.Status


def _interrupted_usage(row: ApiUsageLog, answer: Message) -> Usage:
    """What an interrupted exchange is charged: the estimate of its prompt and of the output its
    server last saved (text, and the running estimate that includes reasoning); nothing if none was."""
    completion = max(count_tokens(answer.content, row.model_name) if answer.content else 0,
                     answer.completion_tokens or 0)
    if not completion:
        return base.unbilled_usage("interrupted")
    prompt = int((row.metadata or {}).get("estimated_prompt_tokens") or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 source="estimate", finish_reason="interrupted")


def stale_before(now: datetime | None = None) -> datetime:
    """Heartbeats older than this have stopped: `CHATLIMA_HEARTBEAT_STALE_SECONDS` (several save
    intervals) before now."""
    return (now or timezone.now()) - timedelta(seconds=settings.CHATLIMA_HEARTBEAT_STALE_SECONDS)


def settle_interrupted_exchanges(now: datetime | None = None) -> int:
    """Settle as `interrupted` the pending exchanges whose heartbeat has stopped, keeping their saved
    partial answers; returns how many.

    Only exchanges no live server streams: a streaming answer's `heartbeat_at` is stamped every save
    interval (chat.partials); one that never beat counts from its usage row's creation. Each settle
    is `settle_exchange`'s compare-and-set (one transaction each), so a sweep racing a live settle
    or another sweep counts the exchange once.
    """
    cutoff = stale_before(now)
    pending = (
        ApiUsageLog.objects.filter(status=S.PENDING, message__isnull=False)
        .filter(Q(message__heartbeat_at__lt=cutoff) | Q(message__heartbeat_at__isnull=True, created_at__lt=cutoff))
        .select_related("message")
    )
    count = 0
    for row in pending.iterator():
        outcome = Outcome(status=S.INTERRUPTED, text=row.message.content, usage=_interrupted_usage(row, row.message),
                          error_code="INTERRUPTED", error_message="The server stopped during this exchange.")
        if settle_exchange(SettleTarget.of(row), outcome) is not None:
            count += 1
    return count


def has_fresh_pending(now: datetime | None = None) -> bool:
    """Whether some pending exchange still has a recent heartbeat (a live server, or one just gone)."""
    cutoff = stale_before(now)
    return ApiUsageLog.objects.filter(status=S.PENDING).filter(
        Q(message__heartbeat_at__gte=cutoff) | Q(message__heartbeat_at__isnull=True, created_at__gte=cutoff)
    ).exists()
