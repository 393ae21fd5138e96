from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from chatlima.logging import JsonLinesFormatter
from tests.ops.conftest import make_log, user_in
from usage import tasks
from usage.models import ApiUsageLog, DailyUsageRollup
from usage.rollups import purge_horizon, rollup_day
from usage.signals import exchange_settled

pytestmark = pytest.mark.django_db


def test_each_settled_exchange_logs_one_structured_line(owner, caplog):
    log = make_log(owner, datetime.now(UTC), prompt_tokens=32, completion_tokens=120, reasoning_tokens=20,
                   cost_estimate=Decimal("0.000309"), response_time_ms=1500, time_to_first_token_ms=200,
                   usage_source="estimate", metadata={"retries": 1})
    with caplog.at_level(logging.INFO, logger="chatlima.exchange"):
        exchange_settled.send(sender=None, user_id=owner.pk, usage_log_id=log.pk)
    records = [r for r in caplog.records if r.name == "chatlima.exchange"]
    assert len(records) == 1
    line = json.loads(JsonLinesFormatter().format(records[0]))
    assert line["request_id"] == log.request_id
    assert line["usage_log_id"] == str(log.pk)
    assert line["user_id"] == owner.pk
    assert line["model"] == "gpt-4o-mini"
    assert (line["prompt_tokens"], line["completion_tokens"], line["reasoning_tokens"]) == (32, 120, 20)
    assert Decimal(line["cost_estimate"]) == Decimal("0.000309")
    assert line["usage_source"] == "estimate"
    assert (line["response_time_ms"], line["time_to_first_token_ms"], line["retries"]) == (1500, 200, 1)
    assert "\n" not in JsonLinesFormatter().format(records[0])


def test_failed_exchange_logs_at_warning(owner, caplog):
    log = make_log(owner, datetime.now(UTC), status=ApiUsageLog.Status.TIMEOUT)
    with caplog.at_level(logging.INFO, logger="chatlima.exchange"):
        exchange_settled.send(sender=None, user_id=owner.pk, usage_log_id=log.pk)
    assert [r.levelname for r in caplog.records if r.name == "chatlima.exchange"] == ["WARNING"]


def test_retention_keeps_everything_when_unset(owner, settings):
    settings.CHATLIMA_USAGE_RETENTION_DAYS = None
    make_log(owner, datetime(2020, 1, 1, tzinfo=UTC))
    assert tasks.purge_old_usage_logs.apply().result == 0
    assert ApiUsageLog.objects.count() == 1


def test_retention_deletes_old_days_only_after_rolling_them_up(settings, db):
    settings.CHATLIMA_USAGE_RETENTION_DAYS = 30
    now = datetime.now(UTC)
    horizon = purge_horizon(now)
    tokyo = user_in("tokyo_user", "Asia/Tokyo")
    la = user_in("la_user", "America/Los_Angeles")
    old_day = horizon - timedelta(days=3)
    for user in (tokyo, la):
        from usage.rollups import local_day_bounds

        start, _ = local_day_bounds(old_day, user.timezone)
        make_log(user, start + timedelta(hours=1), prompt_tokens=111, completion_tokens=0)
        make_log(user, start + timedelta(hours=2), prompt_tokens=222, completion_tokens=0)
        keep_start, _ = local_day_bounds(horizon, user.timezone)
        make_log(user, keep_start, prompt_tokens=5, completion_tokens=0)  # the horizon's first minute: kept
    # No rollup has run yet: retention must compute it before it deletes the rows.
    assert DailyUsageRollup.objects.count() == 0

    deleted = tasks.purge_old_usage_logs.apply().result

    assert deleted == 4
    assert ApiUsageLog.objects.count() == 2
    assert all(log.prompt_tokens == 5 for log in ApiUsageLog.objects.all())
    for user in (tokyo, la):
        rollup = DailyUsageRollup.objects.get(user=user, day=old_day)
        assert (rollup.requests, rollup.prompt_tokens) == (2, 333)


def test_purged_days_are_frozen_so_a_backfill_keeps_their_rollups(settings, owner):
    settings.CHATLIMA_USAGE_RETENTION_DAYS = 10
    old_day = purge_horizon() - timedelta(days=2)
    make_log(owner, datetime.combine(old_day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=3))
    tasks.purge_old_usage_logs.apply()
    assert ApiUsageLog.objects.count() == 0
    assert DailyUsageRollup.objects.get(day=old_day).requests == 1

    assert rollup_day(old_day) is None
    call_command("rollup_usage", "--from", old_day.isoformat(), "--to", old_day.isoformat(), "--no-progress")
    assert DailyUsageRollup.objects.get(day=old_day).requests == 1


def test_recent_days_are_not_frozen(settings, owner):
    settings.CHATLIMA_USAGE_RETENTION_DAYS = 0
    today = datetime.now(UTC).date()
    assert purge_horizon() == today - timedelta(days=1)
    assert rollup_day(today - timedelta(days=1)) == 0
    assert rollup_day(date(2000, 1, 1)) is None


def test_json_logs_option_writes_one_json_object_per_line():
    """CHATLIMA_JSON_LOGS=1 switches the console handler to JSON lines, extra fields as keys."""
    import os
    import subprocess
    import sys

    from django.conf import settings as django_settings

    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('chatlima.exchange').info('exchange done', extra={'request_id': 'msg_1', 'total_tokens': 152})"
    )
    env = {**os.environ, "CHATLIMA_JSON_LOGS": "1", "DJANGO_SETTINGS_MODULE": "chatlima.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=django_settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=30
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    assert record["message"] == "exchange done"
    assert (record["logger"], record["level"]) == ("chatlima.exchange", "INFO")
    assert (record["request_id"], record["total_tokens"]) == ("msg_1", 152)
