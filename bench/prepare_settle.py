"""Server CPU of one exchange's database work alone: `prepare_exchange` + `settle_exchange`, in one
thread, with production settings, against the database of `--database-url` (PostgreSQL by default).

    .venv/bin/python bench/prepare_settle.py [--exchanges 300] [--profile 25]

No stream, no socket, no frames: the figure issue 17 budgets at 3 ms ("prepare + settle"). Each
exchange is a new message in a conversation of up to `--turns` exchanges (its history is sent
along, as in a real chat; the first starts the conversation). Each part runs as `run_db` runs it:
the pooled connection goes back to the pool after it. It prints CPU per exchange for each part and
the statements each part runs, and PostgreSQL's own CPU for them (read from /proc: the database
runs on this machine); with --profile N, cProfile's N costliest functions by own CPU time
(and BENCH_CALLEES=regex: what those functions call; BENCH_SHOW_SQL=1: the statements).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(database_url: str, redis_url: str | None) -> None:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "chatlima.settings", "DATABASE_URL": database_url,
        "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-" + os.urandom(24).hex(),
        "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_LOG_LEVEL": "WARNING",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT": "",
    })
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    else:
        os.environ.pop("REDIS_URL", None)
    from bench.ws_load import ensure_database

    ensure_database(database_url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgres://root@127.0.0.1:5432/chatlima_bench_exchange"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="Redis for the cache the settle's listeners use ('' for none)")
    parser.add_argument("--exchanges", type=int, default=300)
    parser.add_argument("--turns", type=int, default=10,
                        help="exchanges per conversation before a new one starts (0: one conversation for all)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N functions")
    args = parser.parse_args()
    setup(args.database_url, args.redis_url or None)

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import User
    from chat.exchange import Outcome, charged_usage, parse_send_body, prepare_exchange, settle_exchange
    from chat.exchange.prepare import Prepared
    from usage.models import Budget

    user, _ = User.objects.get_or_create(username="bench-prepare-settle")
    Budget.objects.for_user(user)
    Budget.objects.filter(user=user).update(token_limit=None, cost_limit=None)
    answer = "A short answer of a few words, as the offline model gives. " * 3

    def as_run_db(fn, *args):
        """As chatlima.db.run_db's thread does: the pooled connection goes back to the pool after each
        call (taken again by the next), so the pool's checkout and return are in the figures."""
        try:
            return fn(*args)
        finally:
            if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
                connection.close()

    def one(conversation_id: str | None) -> tuple[Prepared, float, float]:
        body = {"message": "How much did that cost?", "model": "offline-demo"}
        if conversation_id:
            body["conversation_id"] = conversation_id
        started = time.process_time()
        prepared = as_run_db(prepare_exchange, user, parse_send_body(body))
        middle = time.process_time()
        usage = charged_usage(prepared.chat_request, answer)
        as_run_db(settle_exchange, prepared.target,
                  Outcome(status="success", text=answer, usage=usage, response_time_ms=5))
        return prepared, middle - started, time.process_time() - middle

    conversation: str | None = None
    done_in_conversation = 0

    def next_one() -> tuple[float, float]:
        nonlocal conversation, done_in_conversation
        if args.turns and done_in_conversation >= args.turns:
            conversation, done_in_conversation = None, 0
        prepared, p, s = one(conversation)
        conversation = prepared.saved_event["conversation_id"]
        done_in_conversation += 1
        return p, s

    for _ in range(20):  # warm: imports, caches
        next_one()
    conversation = conversation or one(None)[0].saved_event["conversation_id"]
    with CaptureQueriesContext(connection) as prepare_queries:
        prepared = prepare_exchange(user, parse_send_body({"message": "Count me", "conversation_id": conversation}))
    with CaptureQueriesContext(connection) as settle_queries:
        settle_exchange(prepared.target, Outcome(status="success", text=answer,
                                                 usage=charged_usage(prepared.chat_request, answer)))

    def backend_cpu() -> float | None:
        """CPU seconds of this database's PostgreSQL backends (same machine: /proc), or None."""
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            pids = [row[0] for row in cursor.fetchall()]
        as_run_db(lambda: None)
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not wall time
    database_cpu = backend_cpu()
    prepare_cpu = settle_cpu = 0.0
    wall = time.perf_counter()
    if profiler:
        profiler.enable()
    for _ in range(args.exchanges):
        p, s = next_one()
        prepare_cpu += p
        settle_cpu += s
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - wall
    n = args.exchanges
    after = backend_cpu()
    database_cpu = None if database_cpu is None or after is None else after - database_cpu
    print(f"{n} exchanges on {connection.vendor}, {args.turns or n} per conversation, one thread, {wall:.1f} s")
    print(f"prepare: {prepare_cpu / n * 1000:.2f} ms CPU per exchange, {len(prepare_queries)} statements")
    print(f"settle:  {settle_cpu / n * 1000:.2f} ms CPU per exchange, {len(settle_queries)} statements")
    print(f"prepare + settle: {(prepare_cpu + settle_cpu) / n * 1000:.2f} ms  (target <= 3 ms)")
    if database_cpu is not None:
        print(f"PostgreSQL's own CPU for them (its backends, this machine): {database_cpu / n * 1000:.2f} ms per exchange")
    if profiler:
        print("  (profiled: cProfile adds its own cost to these figures)")
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(args.profile)
        print("ChatLima's own functions by cumulative time:")
        stats.sort_stats("cumulative").print_stats(r"/(chat|usage|accounts|chatlima)/", args.profile)
        if os.environ.get("BENCH_CALLEES"):
            stats.print_callees(os.environ["BENCH_CALLEES"])
    if os.environ.get("BENCH_SHOW_SQL"):
        for q in [*prepare_queries, *settle_queries]:
            print(q["sql"][:160])
    return 0


if __name__ == "__main__":
    sys.exit(main())
