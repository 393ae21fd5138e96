"""Celery tasks: thin wrappers over the rollup and retention functions."""

from __future__ import annotations

from datetime import date

from celery import shared_task

from usage import retention, rollups


@shared_task(name="usage.rollup_recent")
def rollup_recent() -> int:
    """Yesterday, today (and tomorrow, for time zones ahead of UTC): run after midnight and hourly."""
    return rollups.rollup_recent()


@shared_task(name="usage.rollup_days")
def rollup_days(start: str, end: str) -> int:
    return rollups.rollup_range(date.fromisoformat(start), date.fromisoformat(end))


@shared_task(name="usage.rebuild_user_rollups")
def rebuild_user_rollups(user_id: int) -> int:
    return rollups.rebuild_user(user_id)


@shared_task(name="usage.purge_old_usage_logs")
def purge_old_usage_logs() -> int:
    return retention.purge_old_usage_logs()


@shared_task(name="usage.refresh_rollup_for")
def refresh_rollup_for(usage_log_id: str) -> int | None:
    """Bring one exchange's user-day rollup up to date; queued so it stays off the exchange's path."""
    from usage.models import ApiUsageLog

    usage_log = ApiUsageLog.objects.select_related("user").filter(pk=usage_log_id).first()
    return None if usage_log is None else rollups.refresh_for(usage_log)
