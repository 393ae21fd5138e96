"""Daily usage rollups: recompute a day from the raw usage rows and upsert it.

A day is the user's local day: a usage row belongs to the date of its
`created_at` in its user's time zone. For one local date, each time zone
covers one half-open UTC window [local midnight, next local midnight); the
windows of consecutive dates tile the time line, so a row is counted in
exactly one day, and recomputing any range of days is exact.

Locking contract: `rollup_day` runs in one transaction. On PostgreSQL a whole
day run takes an exclusive advisory lock on the day; a run restricted to some
users takes the day's lock shared plus an exclusive lock per (day, user), so
two runs that touch the same rollup rows never interleave. SQLite serializes
writers (IMMEDIATE transactions) on its own.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from usage.models import ApiUsageLog, DailyModelRollup, DailyUsageRollup

logger = logging.getLogger(__name__)

ERROR_STATUSES = ApiUsageLog.ERROR_STATUSES  # the one decision, kept on the model (ApiUsageLog.outcome_counts)
FIGURES = (
    "requests", "errors", "cancelled", "prompt_tokens", "completion_tokens", "total_tokens",
    "cached_tokens", "reasoning_tokens", "cost", "actual_cost", "billed_estimate",
)
UNIQUE_FIELDS = ["day", "user", "provider", "model_name"]
_LOCK_NAMESPACE = 0x6C696D61  # "lima": keeps our advisory locks apart from anyone else's
_MODEL_LOCK_NAMESPACE = _LOCK_NAMESPACE + 1


def local_day_bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """The UTC window [start, end) that the local date `day` covers in `tz_name`."""
    tz = zoneinfo.ZoneInfo(tz_name)
    start = datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return start, end


def timezones_in_use(user_ids: Iterable[int] | None = None) -> list[str]:
    users = get_user_model().objects.all()
    if user_ids is not None:
        users = users.filter(pk__in=list(user_ids))
    return sorted(set(users.values_list("timezone", flat=True)))


def rows_of_day(day: date, tz_names: Iterable[str]) -> Q:
    """Usage rows whose user's local date is `day`: one UTC window per time zone group."""
    q = Q(pk__in=[])
    for tz_name in tz_names:
        start, end = local_day_bounds(day, tz_name)
        q |= Q(user__timezone=tz_name, created_at__gte=start, created_at__lt=end)
    return q


def aggregate_rows(day: date, user_ids: list[int] | None = None):
    """The day's figures per (user, provider, model) as one GROUP BY query.

    Finished rows only: a pending exchange is counted when it settles (its settle refreshes the rollup).
    Requests, errors and cancellations are counted as `ApiUsageLog.outcome_counts` decides.
    """
    logs = ApiUsageLog.objects.finished().filter(rows_of_day(day, timezones_in_use(user_ids)))
    if user_ids is not None:
        logs = logs.filter(user_id__in=user_ids)
    money = DecimalField(max_digits=16, decimal_places=8)
    return (
        logs.values("user_id", "provider", "model_name")
        .annotate(
            # Before `actual_cost` is annotated: its filter means the row's column, not that sum.
            billed_estimate=Sum("cost_estimate", filter=Q(actual_cost__isnull=False)),
            **ApiUsageLog.outcome_counts(),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            total_tokens=Coalesce(Sum("total_tokens"), 0),
            cached_tokens=Coalesce(Sum("cached_tokens"), 0),
            reasoning_tokens=Coalesce(Sum("reasoning_tokens"), 0),
            cost=Coalesce(Sum("cost_estimate"), Value(0), output_field=money),
            actual_cost=Sum("actual_cost"),
        )
        .order_by()
    )


def _lock(day: date, user_ids: list[int] | None) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if user_ids is None:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, day.toordinal()])
            return
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [_LOCK_NAMESPACE, day.toordinal()])
        for user_id in sorted(set(user_ids)):  # a fixed order, so two runs cannot deadlock
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [(day.toordinal() << 32) | (user_id & 0xFFFFFFFF)])


def purge_horizon(now: datetime | None = None) -> date | None:
    """The first local day whose raw rows are kept; None when rows are kept forever."""
    days = settings.CHATLIMA_USAGE_RETENTION_DAYS
    if days is None:
        return None
    today = (now or timezone.now()).astimezone(UTC).date()
    # One day of slack: every time zone's today is at most a day behind UTC's.
    return today - timedelta(days=days + 1)


def is_frozen(day: date) -> bool:
    """Days retention may already have purged: their raw rows are gone, so never recompute them."""
    horizon = purge_horizon()
    return horizon is not None and day < horizon


def rollup_day(day: date, user_ids: Iterable[int] | None = None, allow_frozen: bool = False) -> int | None:
    """Recompute the rollups of one local day from the raw rows and upsert them; idempotent.

    With `user_ids`, only those users' rollups of that day are recomputed.
    Rollup rows whose (user, provider, model) no longer has raw rows that day
    are removed. Returns the number of rollup rows written, or None when the
    day is frozen by retention.
    """
    if not allow_frozen and is_frozen(day):
        logger.warning("rollup of %s skipped: older than the usage retention horizon", day)
        return None
    ids = None if user_ids is None else sorted(set(user_ids))
    with transaction.atomic():
        _lock(day, ids)
        stamp = timezone.now()
        rollups = [
            DailyUsageRollup(day=day, computed_at=stamp, **row) for row in aggregate_rows(day, ids)
        ]
        if rollups:
            DailyUsageRollup.objects.bulk_create(
                rollups,
                update_conflicts=True,
                unique_fields=UNIQUE_FIELDS,
                update_fields=[*FIGURES, "computed_at"],
            )
        # What this run did not write is stale (the lock makes this run the only writer of these rows).
        stale = DailyUsageRollup.objects.filter(day=day).exclude(computed_at=stamp)
        if ids is not None:
            stale = stale.filter(user_id__in=ids)
        stale.delete()
        _rollup_models(day)
    return len(rollups)


def _rollup_models(day: date) -> None:
    """Sum the day's per-user rollups per (provider, model) for the report.

    Under an exclusive lock held to commit, so of two runs over different users of
    the same day the second to get here sees the first's committed rows and writes last.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_MODEL_LOCK_NAMESPACE, day.toordinal()])
    stamp = timezone.now()
    money = DecimalField(max_digits=16, decimal_places=8)
    sums = {name: Coalesce(Sum(name), 0) for name in FIGURES if name not in ("cost", "actual_cost", "billed_estimate")}
    rows = (
        DailyUsageRollup.objects.filter(day=day)
        .values("provider", "model_name")
        .annotate(users=Count("id"), cost=Coalesce(Sum("cost"), Value(0), output_field=money),
                  actual_cost=Sum("actual_cost"), billed_estimate=Sum("billed_estimate"), **sums)
        .order_by()
    )
    models = [DailyModelRollup(day=day, computed_at=stamp, **row) for row in rows]
    if models:
        DailyModelRollup.objects.bulk_create(
            models,
            update_conflicts=True,
            unique_fields=["day", "provider", "model_name"],
            update_fields=[*FIGURES, "users", "computed_at"],
        )
    DailyModelRollup.objects.filter(day=day).exclude(computed_at=stamp).delete()


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def rollup_range(start: date, end: date, on_day: Callable[[date, int | None], None] | None = None) -> int:
    """Recompute every day from `start` to `end` inclusive; the task and the command share it."""
    written = 0
    for day in days_between(start, end):
        count = rollup_day(day)
        written += count or 0
        if on_day:
            on_day(day, count)
    return written


def recent_days(now: datetime | None = None) -> tuple[date, date]:
    """Yesterday to tomorrow in UTC: every time zone's yesterday and today lie in it."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return today - timedelta(days=1), today + timedelta(days=1)


def rollup_recent(now: datetime | None = None) -> int:
    start, end = recent_days(now)
    return rollup_range(start, end)


def refresh_for(usage_log: ApiUsageLog) -> int | None:
    """Recompute the rollup of one usage row's user and local day, so reports are current between the hourly runs."""
    day = usage_log.created_at.astimezone(zoneinfo.ZoneInfo(usage_log.user.timezone)).date()
    return rollup_day(day, user_ids=[usage_log.user_id])


def refresh_active(now: datetime | None = None) -> int:
    """Recompute local today and yesterday (an exchange settled now may have started yesterday) of
    every user with a usage row settled in the last two
    refresh windows (`settled_at`; CHATLIMA_ROLLUP_REFRESH_SECONDS each). Beat runs it once per
    window (usage.refresh_active_rollups), so the reports stay current between the hourly runs with
    nothing on the exchange's path; two windows, so a settle that committed just after the previous
    run read, or a run that came late, is still found. One `rollup_day` (its own transaction and
    locks) per local day and time zone, for that zone's users together."""
    now = now or timezone.now()
    since = now - timedelta(seconds=2 * settings.CHATLIMA_ROLLUP_REFRESH_SECONDS)
    settled = ApiUsageLog.objects.filter(settled_at__gte=since).values("user_id")
    by_zone: dict[str, list[int]] = {}
    for user_id, tz_name in get_user_model().objects.filter(pk__in=settled).values_list("pk", "timezone"):
        by_zone.setdefault(tz_name, []).append(user_id)
    written = 0
    for tz_name, user_ids in sorted(by_zone.items()):
        today = now.astimezone(zoneinfo.ZoneInfo(tz_name)).date()
        for day in (today - timedelta(days=1), today):
            written += rollup_day(day, user_ids=user_ids) or 0
    return written


def rebuild_user(user_id: int) -> int:
    """Recompute all of one user's rollups in their current time zone (after a time zone change).

    The days are the user's days that have raw rows now, plus the days of their
    existing rollups (which may have been computed in the old time zone), so no
    row can be counted on two days. Days frozen by retention are left as they are.
    """
    user = get_user_model().objects.get(pk=user_id)
    days = set(
        ApiUsageLog.objects.filter(user_id=user_id)
        .annotate(local_day=TruncDate("created_at", tzinfo=zoneinfo.ZoneInfo(user.timezone)))
        .values_list("local_day", flat=True)
        .distinct()
        .order_by()
    )
    days |= set(DailyUsageRollup.objects.filter(user_id=user_id).values_list("day", flat=True).distinct())
    written = 0
    for day in sorted(days):
        written += rollup_day(day, user_ids=[user_id]) or 0
    return written
