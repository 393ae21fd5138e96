"""Sync load: push and pull 1,000 conversations of 20 messages through the real REST API.

    DATABASE_URL=postgres://root@127.0.0.1:5432/chatlima_bench .venv/bin/python bench/sync_load.py

Runs in-process (the Django app, Bearer auth, JSON parsing, the push and pull
code and the database; no network server). Migrates the database first and
creates it when it is a missing PostgreSQL database. Prints seconds, queries
per request and rows per second for: the first push, its replay (idempotent),
and a full pull. Options: --conversations N --messages M --page P.

    .venv/bin/python bench/sync_load.py --invalid 2500,5000,10000,20000

times instead the refusal of pushes whose every message is invalid (validation must
grow linearly with the body), in conversations of --messages messages each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")


def ensure_database() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg
    from dj_database_url import parse

    cfg = parse(url)
    try:
        psycopg.connect(dbname=cfg["NAME"], user=cfg["USER"], host=cfg["HOST"], port=cfg["PORT"] or 5432,
                        password=cfg["PASSWORD"] or None).close()
    except psycopg.OperationalError:
        with psycopg.connect(dbname="postgres", user=cfg["USER"], host=cfg["HOST"], port=cfg["PORT"] or 5432,
                             password=cfg["PASSWORD"] or None, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{cfg["NAME"]}"')


def build_body(n_conversations: int, n_messages: int) -> dict:
    conversations = []
    for c in range(n_conversations):
        conv_id = f"conv_1753195195759_b{c:08d}"
        messages = []
        for m in range(n_messages):
            msg_id = f"msg_1753195195759_{c:06d}{m:03d}"
            ts = f"2025-07-22T{10 + m // 60:02d}:{m % 60:02d}:00.000Z"
            if m % 2 == 0:
                messages.append({"id": msg_id, "role": "user", "content": f"Question {m} about topic {c}: how many airports?",
                                 "timestamp": ts, "originalModel": "moonshotai/kimi-k2:free", "prompt_tokens": 32 + m})
            else:
                messages.append({"id": msg_id, "role": "assistant", "timestamp": ts, "model": "moonshotai/kimi-k2:free",
                                 "content": "Japan has **28 international airports**. " * 4, "elapsed_time": 3,
                                 "completion_tokens": 120, "total_tokens": 152 + m, "user_message_id": messages[-1]["id"],
                                 "contentType": "markdown", "completion_id": f"gen-{c}-{m}"})
        conversations.append({"id": conv_id, "title": f"Conversation {c}", "createdAt": "2025-07-22T10:00:00.000Z",
                              "updatedAt": "2025-07-22T11:00:00.000Z", "isActive": True, "messages": messages,
                              "userId": "ignored", "messageCount": n_messages})
    return {"conversations": conversations}


def build_invalid_body(n_messages: int, per_conversation: int) -> dict:
    """`n_messages` messages, each with one bad field, so every one of them is reported."""
    body = build_body(-(-n_messages // per_conversation), per_conversation)
    left = n_messages
    for conversation in body["conversations"]:
        conversation["messages"] = conversation["messages"][:left]
        left -= len(conversation["messages"])
        for message in conversation["messages"]:
            message["prompt_tokens" if message["role"] == "user" else "completion_tokens"] = -1
    return body


def time_invalid(client, sizes: list[int], per_conversation: int, repeats: int = 3) -> None:
    """Best of `repeats` per size, after one small warm-up push."""
    client.post("/api/v1/sync", json.dumps(build_invalid_body(10, per_conversation)), content_type="application/json")
    for n in sizes:
        raw = json.dumps(build_invalid_body(n, per_conversation))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            response = client.post("/api/v1/sync", raw, content_type="application/json")
            best = min(best, time.perf_counter() - start)
            assert response.status_code == 400, response.content[:500]
            reported = len(response.json()["error"]["details"])
            assert reported == n, (reported, n)
        print(f"refuse {n:6d} invalid messages {best:7.2f} s  {n / best:10.0f} messages/s  (best of {repeats})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--page", type=int, default=500, help="conversations per pull page")
    parser.add_argument("--invalid", help="comma-separated message counts: time refusing all-invalid pushes instead")
    args = parser.parse_args()

    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from accounts.models import User

    call_command("migrate", verbosity=0, interactive=False)
    # Our own bench user: the throttle would stop a real client; here it measures the server.
    from django.conf import settings

    settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"].update({"user": "1000000/min", "sync": "1000000/min"})
    from rest_framework.throttling import SimpleRateThrottle

    SimpleRateThrottle.THROTTLE_RATES.update({"user": "1000000/min", "sync": "1000000/min"})

    user = User.objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}", password=uuid.uuid4().hex)
    _, token = AuthToken.objects.create(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    if args.invalid:
        try:
            print(f"database: {connection.vendor} ({connection.settings_dict['NAME']})")
            time_invalid(client, [int(n) for n in args.invalid.split(",")], args.messages)
        finally:
            user.delete()
        return
    body = build_body(args.conversations, args.messages)
    raw = json.dumps(body)
    n_rows = args.conversations * (args.messages + 1)
    print(f"database: {connection.vendor} ({connection.settings_dict['NAME']}); body {len(raw) / 1e6:.1f} MB, "
          f"{args.conversations} conversations x {args.messages} messages = {n_rows} rows")

    try:
        def timed(label: str, call, rows: int) -> object:
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                response = call()
                seconds = time.perf_counter() - start
            assert response.status_code == 200, response.content[:500]
            print(f"{label:<22} {seconds:7.2f} s  {len(queries):5d} queries  {rows / seconds:10.0f} rows/s")
            return response

        first = timed("push (new)", lambda: client.post("/api/v1/sync", raw, content_type="application/json"), n_rows)
        statuses = {c["status"] for c in first.json()["conversations"]}
        assert statuses == {"created"}, statuses
        again = timed("push (replay)", lambda: client.post("/api/v1/sync", raw, content_type="application/json"), n_rows)
        assert {c["status"] for c in again.json()["conversations"]} == {"unchanged"}

        pulled_rows = 0
        pages = 0
        since = None
        total_queries = 0
        start = time.perf_counter()
        while True:
            params = {"limit": args.page, **({"since": since} if since else {})}
            with CaptureQueriesContext(connection) as queries:
                response = client.get("/api/v1/sync", params)
            total_queries += len(queries)
            data = response.json()
            pages += 1
            pulled_rows += sum(1 + len(c["messages"]) for c in data["conversations"])
            since = data["cursor"]
            if not data["has_more"]:
                break
        seconds = time.perf_counter() - start
        assert pulled_rows == n_rows, (pulled_rows, n_rows)
        print(f"{f'pull ({pages} pages)':<22} {seconds:7.2f} s  {total_queries / pages:5.0f} queries/page"
              f"  {pulled_rows / seconds:6.0f} rows/s")
    finally:
        user.delete()


if __name__ == "__main__":
    main()
