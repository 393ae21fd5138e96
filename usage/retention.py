"""Retention of raw usage rows: whole local days older than the configured age go, after rollup.

Rows are deleted one local day at a time, in the same transaction (and under
the same day lock) as the rollup recomputed from them, so a day's rollup is
always complete before its raw rows disappear. Days before the horizon are
then frozen: `rollup_day` refuses to recompute them from the rows that are left.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import date, datetime

from django.db import transaction
from django.db.models.functions import TruncDate

from usage.models import ApiUsageLog
from usage.rollups import local_day_bounds, purge_horizon, rollup_day, rows_of_day, timezones_in_use

logger = logging.getLogger(__name__)


def days_to_purge(horizon: date) -> list[date]:
    """Local days before the horizon that still have raw rows, across all time zone groups."""
    days: set[date] = set()
    for tz_name in timezones_in_use():
        end = local_day_bounds(horizon, tz_name)[0]
        days |= set(
            ApiUsageLog.objects.filter(user__timezone=tz_name, created_at__lt=end)
            .annotate(local_day=TruncDate("created_at", tzinfo=zoneinfo.ZoneInfo(tz_name)))
            .values_list("local_day", flat=True)
            .distinct()
            .order_by()
        )
    return sorted(d for d in days if d < horizon)


def purge_old_usage_logs(now: datetime | None = None) -> int:
    """Roll up, then delete, every raw usage row of a local day before the horizon. Returns rows deleted."""
    horizon = purge_horizon(now)
    if horizon is None:
        return 0
    deleted = 0
    for day in days_to_purge(horizon):
        with transaction.atomic():
            rows = ApiUsageLog.objects.filter(rows_of_day(day, timezones_in_use()))
            user_ids = list(rows.values_list("user_id", flat=True).distinct().order_by())
            # Only the users who still have rows that day: others' rollups of it stay as they are.
            rollup_day(day, user_ids=user_ids, allow_frozen=True)
            count, _ = rows.filter(user_id__in=user_ids).delete()
            deleted += count
        logger.info("usage retention: day %s rolled up, %d raw rows deleted", day, count)
    return deleted
