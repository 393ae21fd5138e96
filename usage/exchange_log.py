"""One structured log line per settled exchange (JSON lines with CHATLIMA_JSON_LOGS=1)."""

from __future__ import annotations

import logging

from chatlima.formats import money_str
from usage.models import ApiUsageLog

logger = logging.getLogger("chatlima.exchange")


def exchange_fields(usage_log: ApiUsageLog) -> dict:
    return {
        "usage_log_id": str(usage_log.pk),
        "request_id": usage_log.request_id,
        "user_id": usage_log.user_id,
        "conversation_id": usage_log.conversation_id,
        "message_id": usage_log.message_id,
        "provider": usage_log.provider,
        "model": usage_log.model_name,
        "status": usage_log.status,
        "prompt_tokens": usage_log.prompt_tokens,
        "completion_tokens": usage_log.completion_tokens,
        "total_tokens": usage_log.total_tokens,
        "cached_tokens": usage_log.cached_tokens,
        "reasoning_tokens": usage_log.reasoning_tokens,
        "cost_estimate": money_str(usage_log.cost_estimate),
        "actual_cost": money_str(usage_log.actual_cost),
        # How the figures were counted: reported by the provider, or our estimate.
        "usage_source": usage_log.usage_source,
        "response_time_ms": usage_log.response_time_ms,
        "time_to_first_token_ms": usage_log.time_to_first_token_ms,
        "retries": (usage_log.metadata or {}).get("retries"),
    }


def log_exchange(usage_log: ApiUsageLog) -> None:
    fields = exchange_fields(usage_log)
    level = logging.INFO if usage_log.status in (ApiUsageLog.Status.SUCCESS, ApiUsageLog.Status.CANCELLED) else logging.WARNING
    logger.log(
        level,
        "exchange %s %s %s: %s+%s tokens (%s)",
        usage_log.request_id, usage_log.model_name, usage_log.status,
        usage_log.prompt_tokens, usage_log.completion_tokens, usage_log.usage_source,
        extra=fields,
    )
