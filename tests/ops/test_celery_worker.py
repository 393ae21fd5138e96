"""The rollup task through a real Celery worker process and the Redis broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from tests.ops.conftest import expected_day_figures, make_log, user_in
from usage import tasks
from usage.models import DailyUsageRollup

pytestmark = [pytest.mark.redis]

BASE_DIR = Path(settings.BASE_DIR)
WAIT_SECONDS = 15


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def worker_queue():
    """A worker on a queue of its own, connected to this test's database; stopped afterwards."""
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (a real broker)")
    if connection.vendor != "postgresql":
        pytest.skip("a worker process cannot see the in-memory SQLite test database")
    queue = f"h6-test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "chatlima.settings",
    }
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115 - the worker writes it until the fixture ends
    celery = Path(sys.executable).with_name("celery")
    proc = subprocess.Popen(
        [str(celery), "-A", "chatlima", "worker", "-Q", queue, "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
         "-n", f"{queue}@%h"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield queue, proc, log.name
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        client.delete(queue, *client.scan_iter(match=f"*{queue}*"))  # the queue and kombu's bindings of it
        log.close()
        os.unlink(log.name)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_computes_the_rollups_the_admin_report_shows(worker_queue, client, django_user_model):
    queue, proc, log_path = worker_queue
    day = date(2026, 2, 14)
    users = [user_in("worker_utc", "UTC"), user_in("worker_kolkata", "Asia/Kolkata")]
    for user in users:
        make_log(user, datetime(2026, 2, 14, 0, 10, tzinfo=UTC), prompt_tokens=11, completion_tokens=22)
        make_log(user, datetime(2026, 2, 14, 20, 0, tzinfo=UTC), model_name="gpt-4o", prompt_tokens=3, completion_tokens=4)
    assert not tasks.rollup_days.app.conf.task_always_eager

    tasks.rollup_days.apply_async(args=[day.isoformat(), date(2026, 2, 15).isoformat()], queue=queue)

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and DailyUsageRollup.objects.count() < 4:
        assert proc.poll() is None, Path(log_path).read_text()
        time.sleep(0.2)
    stored = {
        (r.day, r.user_id, r.model_name): (r.requests, r.prompt_tokens, r.completion_tokens, r.total_tokens)
        for r in DailyUsageRollup.objects.all()
    }
    assert stored == expected_day_figures(), Path(log_path).read_text()
    # 20:00 UTC is 01:30 the next day in Kolkata.
    assert stored[(date(2026, 2, 15), users[1].pk, "gpt-4o")] == (1, 3, 4, 7)

    # The admin's report reads exactly what the worker wrote.
    admin = django_user_model.objects.create_superuser("worker_admin", "admin@example.com", "a-long-passphrase")
    client.force_login(admin)
    response = client.get("/admin/usage/dailyusagerollup/report/", {"start": "2026-02-14", "end": "2026-02-15"})
    assert response.status_code == 200
    totals = response.context["report"].totals
    assert (totals["requests"], totals["total_tokens"]) == (4, 2 * (33 + 7))
