from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import Count, Q, Sum

from tests.ops.conftest import make_log, user_in
from usage import tasks
from usage.models import ApiUsageLog, DailyModelRollup, DailyUsageRollup
from usage.rollups import ERROR_STATUSES, local_day_bounds, rollup_day, rollup_range

pytestmark = pytest.mark.django_db

DAY = date(2026, 3, 10)
S = ApiUsageLog.Status


def expected_rollups() -> dict[tuple, dict]:
    """The figures straight from the raw rows, grouped by each user's local day in Python."""
    out: dict[tuple, dict] = {}
    for log in ApiUsageLog.objects.select_related("user"):
        day = log.created_at.astimezone(zoneinfo.ZoneInfo(log.user.timezone)).date()
        key = (day, log.user_id, log.provider, log.model_name)
        row = out.setdefault(key, {
            "requests": 0, "errors": 0, "cancelled": 0, "prompt_tokens": 0, "completion_tokens": 0,
            "total_tokens": 0, "cached_tokens": 0, "reasoning_tokens": 0, "cost": Decimal("0"), "actual_cost": None,
        })
        row["requests"] += 1
        row["errors"] += log.status in ERROR_STATUSES
        row["cancelled"] += log.status == S.CANCELLED
        for f in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"):
            row[f] += getattr(log, f)
        row["cost"] += log.cost_estimate or 0
        if log.actual_cost is not None:
            row["actual_cost"] = (row["actual_cost"] or Decimal("0")) + log.actual_cost
    return out


def assert_model_rollups_match_user_rollups() -> None:
    """The report's (day, provider, model) rows are exactly the per-user rollups summed."""
    summed: dict[tuple, dict] = {}
    for key, row in stored_rollups().items():
        into = summed.setdefault((key[0], key[2], key[3]), {"users": 0, "actual_cost": None})
        into["users"] += 1
        for name, value in row.items():
            if name == "actual_cost":
                if value is not None:
                    into[name] = (into[name] or 0) + value
            else:
                into[name] = into.get(name, 0) + value
    stored = {
        (r.day, r.provider, r.model_name): {"users": r.users, **{name: getattr(r, name) for name in summed_fields()}}
        for r in DailyModelRollup.objects.all()
    }
    assert stored == summed


def summed_fields() -> tuple[str, ...]:
    return ("requests", "errors", "cancelled", "prompt_tokens", "completion_tokens", "total_tokens",
            "cached_tokens", "reasoning_tokens", "cost", "actual_cost")


def stored_rollups() -> dict[tuple, dict]:
    return {
        (r.day, r.user_id, r.provider, r.model_name): {
            "requests": r.requests, "errors": r.errors, "cancelled": r.cancelled,
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.total_tokens, "cached_tokens": r.cached_tokens,
            "reasoning_tokens": r.reasoning_tokens, "cost": r.cost, "actual_cost": r.actual_cost,
        }
        for r in DailyUsageRollup.objects.all()
    }


@pytest.fixture
def cast(db):
    """Three users in three time zones, rows of several models and outcomes, some a minute either side of local midnight."""
    utc = user_in("utc_user", "UTC")
    tokyo = user_in("tokyo_user", "Asia/Tokyo")  # UTC+9
    la = user_in("la_user", "America/Los_Angeles")  # UTC-7 in March (DST from March 8)
    for user in (utc, tokyo, la):
        start, end = local_day_bounds(DAY, user.timezone)
        make_log(user, start, prompt_tokens=100, completion_tokens=50, cached_tokens=30, reasoning_tokens=5)
        make_log(user, start - timedelta(minutes=1), prompt_tokens=7, completion_tokens=3)  # the day before
        make_log(user, end - timedelta(minutes=1), model_name="gpt-4o", cost_estimate=Decimal("0.25"),
                 actual_cost=Decimal("0.30"))
        make_log(user, end, prompt_tokens=1, completion_tokens=1)  # the day after
        make_log(user, start + timedelta(hours=5), provider="gemini", model_name="gemini-2.5-flash",
                 status=S.ERROR, prompt_tokens=40, completion_tokens=0, cost_estimate=None)
        make_log(user, start + timedelta(hours=6), provider="gemini", model_name="gemini-2.5-flash",
                 status=S.CANCELLED, prompt_tokens=40, completion_tokens=12, usage_source="estimate")
        make_log(user, start + timedelta(hours=7), status=S.TIMEOUT, completion_tokens=0)
    return utc, tokyo, la


def test_task_rollup_matches_a_direct_aggregate_of_the_rows(cast):
    # apply() runs the real task body here whatever the broker; the worker test covers the broker.
    tasks.rollup_days.apply(args=[(DAY - timedelta(days=1)).isoformat(), (DAY + timedelta(days=1)).isoformat()])

    stored = stored_rollups()
    assert stored == expected_rollups()
    assert_model_rollups_match_user_rollups()
    assert DailyModelRollup.objects.get(day=DAY, model_name="gemini-2.5-flash").users == 3
    utc, tokyo, la = cast
    # The rows one minute either side of local midnight went to the neighbouring days.
    for user in cast:
        assert stored[(DAY, user.pk, "openai", "gpt-4o-mini")]["requests"] == 2  # midnight row + timeout row
        assert stored[(DAY - timedelta(days=1), user.pk, "openai", "gpt-4o-mini")]["prompt_tokens"] == 7
        assert stored[(DAY + timedelta(days=1), user.pk, "openai", "gpt-4o-mini")]["prompt_tokens"] == 1
        gemini = stored[(DAY, user.pk, "gemini", "gemini-2.5-flash")]
        assert (gemini["requests"], gemini["errors"], gemini["cancelled"]) == (2, 1, 1)
        assert stored[(DAY, user.pk, "openai", "gpt-4o")]["actual_cost"] == Decimal("0.30")
    assert stored[(DAY, utc.pk, "openai", "gpt-4o-mini")]["errors"] == 1


def test_rollup_totals_per_local_day_match_sql_over_each_users_window(cast):
    rollup_range(DAY - timedelta(days=1), DAY + timedelta(days=1))
    for user in cast:
        start, end = local_day_bounds(DAY, user.timezone)
        raw = ApiUsageLog.objects.filter(user=user, created_at__gte=start, created_at__lt=end).aggregate(
            n=Count("id"), tokens=Sum("total_tokens"), cost=Sum("cost_estimate"),
            errors=Count("id", filter=Q(status__in=ERROR_STATUSES)),
        )
        rolled = DailyUsageRollup.objects.filter(user=user, day=DAY).aggregate(
            n=Sum("requests"), tokens=Sum("total_tokens"), cost=Sum("cost"), errors=Sum("errors")
        )
        assert rolled == raw


def test_running_twice_gives_the_same_rollups(cast):
    rollup_range(DAY - timedelta(days=1), DAY + timedelta(days=1))
    first = stored_rollups()
    rollup_range(DAY - timedelta(days=1), DAY + timedelta(days=1))
    assert stored_rollups() == first
    assert DailyUsageRollup.objects.count() == len(first)


def test_a_late_row_is_counted_once_when_the_day_is_recomputed(cast):
    utc = cast[0]
    rollup_day(DAY)
    before = DailyUsageRollup.objects.get(day=DAY, user=utc, model_name="gpt-4o-mini")
    make_log(utc, datetime(2026, 3, 10, 12, 0, tzinfo=UTC), prompt_tokens=1000, completion_tokens=1)
    rollup_day(DAY)
    rollup_day(DAY)
    after = DailyUsageRollup.objects.get(day=DAY, user=utc, model_name="gpt-4o-mini")
    assert after.requests == before.requests + 1
    assert after.prompt_tokens == before.prompt_tokens + 1000
    assert stored_rollups() == {k: v for k, v in expected_rollups().items() if k[0] == DAY} | {
        k: v for k, v in stored_rollups().items() if k[0] != DAY
    }


def test_rollups_of_rows_that_are_gone_are_removed(cast):
    utc = cast[0]
    rollup_day(DAY)
    assert DailyUsageRollup.objects.filter(day=DAY, user=utc, model_name="gpt-4o").exists()
    ApiUsageLog.objects.filter(user=utc, model_name="gpt-4o").delete()
    rollup_day(DAY)
    assert not DailyUsageRollup.objects.filter(day=DAY, user=utc, model_name="gpt-4o").exists()
    assert DailyModelRollup.objects.get(day=DAY, model_name="gpt-4o").users == 2
    ApiUsageLog.objects.filter(model_name="gpt-4o").delete()
    rollup_day(DAY, user_ids=[cast[1].pk])
    rollup_day(DAY, user_ids=[cast[2].pk])
    assert not DailyModelRollup.objects.filter(day=DAY, model_name="gpt-4o").exists()
    assert_model_rollups_match_user_rollups()
    assert DailyUsageRollup.objects.filter(day=DAY, user=utc, model_name="gpt-4o-mini").exists()


def test_a_timezone_change_moves_rows_between_days_without_double_counting(django_capture_on_commit_callbacks):
    user = user_in("traveller", "UTC")
    # 20:00 UTC on the 10th is 05:00 on the 11th in Tokyo.
    make_log(user, datetime(2026, 3, 10, 20, 0, tzinfo=UTC), prompt_tokens=500, completion_tokens=500)
    make_log(user, datetime(2026, 3, 10, 10, 0, tzinfo=UTC), prompt_tokens=5, completion_tokens=5)
    rollup_range(date(2026, 3, 9), date(2026, 3, 12))
    assert DailyUsageRollup.objects.get(user=user, day=date(2026, 3, 10)).total_tokens == 1010

    with django_capture_on_commit_callbacks(execute=True):
        user.timezone = "Asia/Tokyo"
        user.save()

    by_day = dict(DailyUsageRollup.objects.filter(user=user).values_list("day", "total_tokens"))
    assert by_day == {date(2026, 3, 10): 10, date(2026, 3, 11): 1000}
    # A later scheduled run agrees with the rebuild.
    rollup_range(date(2026, 3, 9), date(2026, 3, 12))
    assert dict(DailyUsageRollup.objects.filter(user=user).values_list("day", "total_tokens")) == by_day
    assert stored_rollups() == expected_rollups()
    assert_model_rollups_match_user_rollups()


def test_rollup_recent_covers_yesterday_today_and_tomorrow(db):
    user = user_in("now_user", "Pacific/Kiritimati")  # UTC+14: its today is usually UTC's tomorrow
    now = datetime.now(UTC)
    make_log(user, now - timedelta(minutes=1))
    tasks.rollup_recent.apply()
    local_day = (now - timedelta(minutes=1)).astimezone(zoneinfo.ZoneInfo("Pacific/Kiritimati")).date()
    assert DailyUsageRollup.objects.get(user=user).day == local_day


def test_rollup_usage_command_backfills_a_range(cast, capsys):
    call_command("rollup_usage", "--from", "2026-03-08", "--to", "2026-03-12")
    out = capsys.readouterr()
    assert "Rolled up 5 day(s) from 2026-03-08 to 2026-03-12" in out.out
    assert "day" in out.err  # the progress bar
    assert stored_rollups() == expected_rollups()


def test_rollup_usage_command_defaults_to_yesterday_and_today(db, capsys):
    call_command("rollup_usage", "--no-progress")
    today = datetime.now(UTC).date()
    assert f"from {today - timedelta(days=1)} to {today}" in capsys.readouterr().out


def test_beat_schedules_the_rollup_after_midnight_and_hourly_and_the_retention(settings):
    from chatlima.celery import app

    app.loader.import_default_modules()
    schedule = settings.CELERY_BEAT_SCHEDULE
    after_midnight = schedule["usage-rollup-after-midnight"]
    hourly = schedule["usage-rollup-hourly"]
    assert after_midnight["task"] == hourly["task"] == "usage.rollup_recent"
    assert after_midnight["schedule"].hour == {0} and len(after_midnight["schedule"].minute) == 1
    assert len(hourly["schedule"].hour) == 24
    assert schedule["usage-retention"]["task"] == "usage.purge_old_usage_logs"
    active = schedule["usage-rollup-active"]
    assert (active["task"], active["schedule"]) == ("usage.refresh_active_rollups", settings.CHATLIMA_ROLLUP_REFRESH_SECONDS)
    for name in ("usage-rollup-after-midnight", "usage-rollup-hourly", "usage-rollup-active", "usage-retention"):
        assert schedule[name]["task"] in app.tasks


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_of_the_same_day_leave_exact_rollups():
    import threading

    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("threads cannot share the in-memory SQLite test database")
    users = [user_in(f"concurrent_{n}", tz) for n, tz in enumerate(["UTC", "Asia/Tokyo", "America/Los_Angeles"])]
    for user in users:
        start, _ = local_day_bounds(DAY, user.timezone)
        for hour in range(0, 24, 3):
            make_log(user, start + timedelta(hours=hour), model_name=f"m{hour % 2}")
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run(user_ids):
        try:
            barrier.wait()
            rollup_day(DAY, user_ids=user_ids)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(ids,)) for ids in (None, None, [users[0].pk], [users[1].pk, users[0].pk])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    assert stored_rollups() == {k: v for k, v in expected_rollups().items() if k[0] == DAY}
    assert_model_rollups_match_user_rollups()


def test_a_settled_exchange_refreshes_its_users_local_day_at_once(db):
    from usage.signals import exchange_settled

    user = user_in("live_user", "Asia/Tokyo")
    other = user_in("other_user", "UTC")
    make_log(other, datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    log = make_log(user, datetime(2026, 3, 10, 16, 0, tzinfo=UTC), prompt_tokens=70, completion_tokens=30)  # 01:00 on the 11th in Tokyo
    exchange_settled.send(sender=ApiUsageLog, user_id=user.pk, usage_log_id=log.pk)
    rollup = DailyUsageRollup.objects.get()
    assert (rollup.user_id, rollup.day, rollup.requests, rollup.total_tokens) == (user.pk, date(2026, 3, 11), 1, 100)
    assert_model_rollups_match_user_rollups()


def test_with_a_broker_a_settled_exchange_leaves_its_refresh_to_beat(db, monkeypatch):
    from chatlima.celery import app
    from usage.signals import exchange_settled

    app.conf.task_always_eager = False  # the autouse _tasks_run_inline fixture puts it back
    published = []
    monkeypatch.setattr(app, "send_task", lambda *args, **kwargs: published.append(args))
    user = user_in("busy_user", "UTC")
    log = make_log(user, datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    for _ in range(3):
        exchange_settled.send(sender=ApiUsageLog, user_id=user.pk, usage_log_id=log.pk)
    # Nothing on the exchange's path: no refresh inline, nothing queued.
    assert DailyUsageRollup.objects.count() == 0 and published == []


def test_beats_refresh_takes_the_users_whose_rows_settled_in_the_last_two_windows(db, settings):
    from usage.rollups import refresh_active

    settings.CHATLIMA_ROLLUP_REFRESH_SECONDS = 30
    now = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
    tokyo, utc, idle = user_in("tokyo_user", "Asia/Tokyo"), user_in("utc_user", "UTC"), user_in("idle_user", "UTC")
    # Started yesterday in Tokyo (the 10th, 23:00 local), settled 50 s ago: still found.
    make_log(tokyo, datetime(2026, 3, 10, 14, 0, tzinfo=UTC), settled_at=now - timedelta(seconds=50),
             prompt_tokens=6, completion_tokens=4)
    make_log(utc, datetime(2026, 3, 10, 17, 59, tzinfo=UTC), settled_at=now - timedelta(seconds=5))
    make_log(utc, datetime(2026, 3, 9, 20, 0, tzinfo=UTC))  # yesterday, settled before: recomputed with the day
    make_log(idle, datetime(2026, 3, 10, 17, 0, tzinfo=UTC), settled_at=now - timedelta(seconds=61))  # too long ago
    make_log(idle, datetime(2026, 3, 10, 17, 58, tzinfo=UTC), status=ApiUsageLog.Status.PENDING)  # not settled
    refresh_active(now)
    stored = {(r.user_id, r.day, r.requests, r.total_tokens) for r in DailyUsageRollup.objects.all()}
    assert stored == {(tokyo.pk, date(2026, 3, 10), 1, 10), (utc.pk, date(2026, 3, 10), 1, 30),
                      (utc.pk, date(2026, 3, 9), 1, 30)}
    assert_model_rollups_match_user_rollups()


def test_beats_refresh_recomputes_the_users_local_today_and_yesterday_only(db):
    from usage.rollups import refresh_active

    now = datetime(2026, 3, 10, 18, 0, tzinfo=UTC)
    user = user_in("late_user", "America/New_York")
    make_log(user, datetime(2026, 3, 10, 3, 0, tzinfo=UTC), prompt_tokens=5, completion_tokens=5)  # the 9th in New York
    make_log(user, datetime(2026, 3, 10, 16, 0, tzinfo=UTC), prompt_tokens=7, completion_tokens=3,
             settled_at=now - timedelta(seconds=1))  # the 10th, just settled
    make_log(user, datetime(2026, 3, 8, 16, 0, tzinfo=UTC))  # two days back: left to the hourly run
    refresh_active(now)
    stored = {(r.day, r.requests, r.total_tokens) for r in DailyUsageRollup.objects.filter(user=user)}
    assert stored == {(date(2026, 3, 9), 1, 10), (date(2026, 3, 10), 1, 10)}
