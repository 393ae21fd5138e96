"""Celery tasks: thin wrappers over the rollup and retention functions."""

from __future__ import annotations

from datetime import date

from celery import shared_task

from usage import retention, rollups
from usage.models import ApiUsageLog


@shared_task(name="usage.rollup_recent")
def rollup_recent() -> int:
    """Yesterday, today (and tomorrow, for time zones ahead of UTC): run after midnight and hourly."""
    return rollups.rollup_recent()


@shared_task(name="usage.rollup_days")
def rollup_days(start: str, end: str) -> int:
    return rollups.rollup_range(date.fromisoformat(start), date.fromisoformat(end))


@shared_task(name="usage.purge_old_usage_logs")
def purge_old_usage_logs() -> int:
    return retention.purge_old_usage_logs()


@shared_task(name="usage.refresh_rollup_for")
def refresh_rollup_for(usage_log_id: str) -> int | None:
    """Bring one exchange's user-day rollup up to date; queued so it stays off the exchange's path."""
    usage_log = ApiUsageLog.objects.select_related("user").filter(pk=usage_log_id).first()
    return None if usage_log is None else rollups.refresh_for(usage_log)


@shared_task(name="usage.refresh_active_rollups")
def refresh_active_rollups() -> int:
    """Every CHATLIMA_ROLLUP_REFRESH_SECONDS (beat): the rollups of the users whose exchanges settled since."""
    return rollups.refresh_active()


def refresh_rollups_soon(user_id: int, usage_log_id) -> None:
    """Keep a user's rollups current after an exchange, with nothing on the exchange's path.

    With no broker (development, tests) the exchange's day is refreshed inline, at once. With one,
    nothing is done here: beat's `refresh_active_rollups` refreshes, once per window, every user
    whose rows settled meanwhile (their `settled_at`). This used to queue a refresh per user and
    window from here: a Redis round trip on every settle, and a Celery publish (about 1 ms of the
    server's CPU) on each user's first of a window (issue 17).
    """
    if refresh_rollup_for.app.conf.task_always_eager:
        refresh_rollup_for.delay(str(usage_log_id))
