"""Usage report under load: 1,000,000 usage rows on PostgreSQL, rolled up, then the report page timed.

    .venv/bin/python bench/report_load.py [--rows 1000000] [--runs 7] [--regenerate]

Uses its own database (BENCH_DATABASE_URL, default postgres://root@127.0.0.1:5432/chatlima_bench),
created and migrated when missing. Prints the rollup time, the report page's median time (Django
test client, signed in as staff) and the median time of the same figures aggregated from the raw
rows, side by side. Target: the page under 300 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://root@127.0.0.1:5432/chatlima_bench"
USERS = 200
DAYS = 90
TIMEZONES = [
    "UTC", "Europe/London", "Europe/Berlin", "Asia/Tokyo", "Asia/Kolkata", "America/New_York",
    "America/Los_Angeles", "Australia/Sydney", "Pacific/Auckland", "America/Sao_Paulo",
]
MODELS = [
    ("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("openrouter", "moonshotai/kimi-k2:free"),
    ("gemini", "gemini-2.5-flash"), ("gemini", "gemini-2.5-pro"), ("offline", "offline-demo"),
]


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.pop("REDIS_URL", None)  # tasks inline; the bench measures the database
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def generate(rows: int) -> None:
    from django.db import connection

    from accounts.models import User

    users = list(User.objects.filter(username__startswith="bench_").order_by("pk").values_list("pk", flat=True))
    if len(users) < USERS:
        User.objects.bulk_create(
            [User(username=f"bench_{n:04d}", timezone=TIMEZONES[n % len(TIMEZONES)], password="!") for n in range(len(users), USERS)]
        )
        users = list(User.objects.filter(username__startswith="bench_").order_by("pk").values_list("pk", flat=True))
    providers = "ARRAY[" + ",".join(f"'{p}'" for p, _ in MODELS) + "]"
    models = "ARRAY[" + ",".join(f"'{m}'" for _, m in MODELS) + "]"
    user_array = "ARRAY[" + ",".join(str(u) for u in users) + "]::bigint[]"
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE api_usage_logs")
        cursor.execute(
            f"""
            INSERT INTO api_usage_logs (
                id, request_id, user_id, provider, model_name, prompt_tokens, completion_tokens, total_tokens,
                cached_tokens, reasoning_tokens, cost_estimate, actual_cost, response_time_ms,
                time_to_first_token_ms, status, usage_source, error_message, metadata, created_at)
            SELECT gen_random_uuid(), 'msg_bench_' || g, ({user_array})[1 + g %% {len(users)}],
                   ({providers})[1 + m], ({models})[1 + m], p, c, p + c, p / 10, c / 8,
                   round((p * 0.0000003 + c * 0.0000025)::numeric, 8),
                   CASE WHEN m = 2 THEN round((p * 0.0000003 + c * 0.0000025)::numeric, 8) END,
                   200 + (g * 7) %% 5000, 50 + (g * 3) %% 900,
                   CASE WHEN g %% 50 = 0 THEN 'error' WHEN g %% 37 = 0 THEN 'cancelled'
                        WHEN g %% 97 = 0 THEN 'timeout' ELSE 'success' END,
                   CASE WHEN m = 5 THEN 'estimate' ELSE 'provider' END, '', '{{}}'::jsonb,
                   now() - (random() * interval '{DAYS} days')
            FROM (SELECT g, (g * 31 + g / 7) %% {len(MODELS)} AS m,
                         20 + (g * 13) %% 3000 AS p, (g * 17) %% 1500 AS c
                  FROM generate_series(1, %s) AS g) AS s
            """,
            [rows],
        )
        cursor.execute("ANALYZE api_usage_logs")
    print(f"generated {rows:,} usage rows for {len(users)} users in {time.perf_counter() - started:.1f} s")


def median_ms(fn, runs: int) -> tuple[float, list[float]]:
    fn()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), times


RAW_SQL = {
    "totals": """
        SELECT count(*), sum(l.total_tokens), sum(l.cost_estimate),
               count(*) FILTER (WHERE l.status IN ('error','timeout','rate_limited','interrupted')),
               count(*) FILTER (WHERE l.status = 'cancelled')
        FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id
        WHERE (l.created_at AT TIME ZONE u.timezone)::date BETWEEN %s AND %s""",
    "by_day": """
        SELECT (l.created_at AT TIME ZONE u.timezone)::date AS day, sum(l.total_tokens), sum(l.cost_estimate)
        FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id
        WHERE (l.created_at AT TIME ZONE u.timezone)::date BETWEEN %s AND %s GROUP BY 1 ORDER BY 1""",
    "by_model": """
        SELECT l.provider, l.model_name, count(*), sum(l.total_tokens), sum(l.cost_estimate)
        FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id
        WHERE (l.created_at AT TIME ZONE u.timezone)::date BETWEEN %s AND %s GROUP BY 1, 2 ORDER BY 5 DESC""",
    "by_provider": """
        SELECT l.provider, count(*), sum(l.total_tokens), sum(l.cost_estimate)
        FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id
        WHERE (l.created_at AT TIME ZONE u.timezone)::date BETWEEN %s AND %s GROUP BY 1 ORDER BY 4 DESC""",
    "by_user": """
        SELECT u.username, count(*), sum(l.total_tokens), sum(l.cost_estimate)
        FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id
        WHERE (l.created_at AT TIME ZONE u.timezone)::date BETWEEN %s AND %s GROUP BY 1 ORDER BY 4 DESC LIMIT 20""",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true", help="regenerate the rows even if the count matches")
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    ensure_database(url)
    setup_django(url)

    from datetime import UTC, datetime, timedelta

    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User
    from usage.models import ApiUsageLog, DailyUsageRollup
    from usage.rollups import rollup_range

    call_command("migrate", verbosity=0)
    if args.regenerate or ApiUsageLog.objects.count() != args.rows:
        generate(args.rows)
        DailyUsageRollup.objects.all().delete()
    rows = ApiUsageLog.objects.count()

    today = datetime.now(UTC).date()
    started = time.perf_counter()
    rollup_range(today - timedelta(days=DAYS + 2), today + timedelta(days=1))
    rollup_seconds = time.perf_counter() - started
    print(f"rolled up {DAYS + 4} days -> {DailyUsageRollup.objects.count():,} rollup rows in {rollup_seconds:.1f} s")
    # Re-running the rollups rewrites every row (upserts leave dead tuples); autovacuum would
    # catch up in production, so measure on a vacuumed table with fresh statistics.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE usage_dailyusagerollup")

    staff, _ = User.objects.get_or_create(username="bench_staff", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(staff)

    load = os.getloadavg()[0]
    print(f"\n{rows:,} usage rows on PostgreSQL {connection.pg_version // 10000}; {args.runs} runs each, median;"
          f" load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"{'range':>8} | {'report page (rollups)':>22} | {'raw aggregate (api_usage_logs)':>31} | queries")
    for span in (30, 90):
        start, end = today - timedelta(days=span - 1), today
        params = {"start": start.isoformat(), "end": end.isoformat()}

        def page(params=params):
            response = client.get("/admin/usage/dailyusagerollup/report/", params)
            assert response.status_code == 200 and b"Top spenders" in response.content

        def raw(start=start, end=end):
            with connection.cursor() as cursor:
                for sql in RAW_SQL.values():
                    cursor.execute(sql, [start, end])
                    cursor.fetchall()

        page_ms, _ = median_ms(page, args.runs)
        raw_ms, _ = median_ms(raw, args.runs)
        with CaptureQueriesContext(connection) as queries:
            page()
        verdict = "OK" if page_ms < 300 else "OVER 300 ms"
        print(f"{span:>5} d | {page_ms:>18.1f} ms | {raw_ms:>27.1f} ms | {len(queries)}  {verdict}")


if __name__ == "__main__":
    main()
