"""The connection pool with real server processes on one PostgreSQL database (the `e2e_db` fixture).

* two daphne processes (`chatlima.serve --workers 2`) and a Celery worker under a burst of streams
  stay within processes x pool size connections, and every stream completes;
* a server whose only pooled connection is stuck answers other requests 503 SERVICE_UNAVAILABLE (the
  contract's JSON body on HTTP, an `error` frame on the WebSocket) within the pool's timeout, never
  a 500, stores nothing for them, and serves normally once the connection is free again.

PostgreSQL only: SQLite has no pool (and one writer at a time).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.daphne import ROOT, Daphne, stop_process
from tests.e2e.conftest import _server_env

ASK = "Tell me about tokens."


def _postgres_only(e2e_db) -> None:
    if not e2e_db.is_postgres:
        pytest.skip("the connection pool is PostgreSQL's")


def _env(url: str, **extra: str) -> dict[str, str]:
    env = _server_env(url)
    env.pop("REDIS_URL", None)  # in-memory layer, tasks inline: the servers stand alone
    env.update({"CHATLIMA_USER_THROTTLE": "100000/min", **extra})
    return env


def _serve(env: dict[str, str], log_dir: Path, name: str, workers: int) -> Daphne:
    """`python -m chatlima.serve --workers N`: a minute to start (several processes on a busy machine)."""
    return Daphne(env, log_dir, name=name, workers=workers).start(timeout=60)


def _post_stream(port: int, token: str, body: dict, timeout: float = 60) -> tuple[int, dict, list[dict]]:
    """POST /api/v1/chat/stream: the status, the headers and the events (or the JSON error as one)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/api/v1/chat/stream", body=json.dumps(body), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if response.status != 200:
            return response.status, headers, [json.loads(response.read())]
        events = [json.loads(line[6:]) for line in response.read().decode().splitlines() if line.startswith("data: ")]
        return response.status, headers, events
    finally:
        connection.close()


class ConnectionPeak(threading.Thread):
    """Samples how many client connections the e2e database has, every 20 ms, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.peak, self.samples = url, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.is_set():
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchone()
                self.peak, self.samples = max(self.peak, count), self.samples + 1
                time.sleep(0.02)

    def stop(self) -> int:
        self.done.set()
        self.join(10)
        return self.peak


def test_two_servers_and_a_celery_worker_stay_within_their_pools_under_a_burst(e2e_db, tmp_path):
    _postgres_only(e2e_db)
    pool_size, workers, streams = 3, 2, 48
    env = _env(e2e_db.url, CHATLIMA_DB_POOL_SIZE=str(pool_size))
    server = _serve(env, tmp_path, "serve", workers)
    worker = queue = None
    celery_children = 0
    redis_url = os.environ.get("REDIS_URL", "")
    try:
        if redis_url:
            # A prefork worker of two children on a queue of its own, kept busy with rollups meanwhile.
            queue = f"pool-test-{uuid.uuid4().hex[:10]}"
            celery_children = 2
            worker = subprocess.Popen(
                [str(Path(sys.executable).with_name("celery")), "-A", "chatlima", "worker", "-Q", queue,
                 f"--concurrency={celery_children}", "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--loglevel=WARNING", "-n", f"{queue}@%h"],
                cwd=ROOT, env={**env, "REDIS_URL": redis_url}, stdout=(tmp_path / "celery.log").open("w"),
                stderr=subprocess.STDOUT,
            )
        token = server.register("burster", "a-long-pool-password-1", timeout=20)
        results: list[tuple[int, str]] = []
        go = threading.Barrier(streams + 1)

        def one() -> None:
            go.wait()
            status, _, events = _post_stream(server.port, token, {"message": ASK})
            results.append((status, events[-1].get("type", "") if events else ""))

        clients = [threading.Thread(target=one, daemon=True) for _ in range(streams)]
        for client in clients:
            client.start()
        peak = ConnectionPeak(e2e_db.url)
        peak.start()
        if worker is not None:
            from celery import Celery

            sender = Celery(broker=redis_url)
            for _ in range(20):
                sender.send_task("usage.rollup_recent", queue=queue)
        go.wait()
        for client in clients:
            client.join(120)
        most = peak.stop()
    finally:
        server.stop(timeout=15)
        if worker is not None:
            stop_process(worker, timeout=15)
            import redis

            client = redis.Redis.from_url(redis_url)
            client.delete(queue, *client.scan_iter(match=f"*{queue}*"))
    assert sorted(set(results)) == [(200, "message_complete")] and len(results) == streams, results[:5]
    assert peak.samples > 10
    bound = workers * pool_size + celery_children
    assert 0 < most <= bound, f"{most} connections at once; the pools allow {bound}"
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]


def _wait_for_lock_waiter(e2e_db, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if e2e_db.rows("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock'"):
            return
        time.sleep(0.02)
    pytest.fail("the first request never waited on the lock")


def test_a_server_whose_pool_is_exhausted_answers_503_and_error_frames_then_recovers(e2e_db, tmp_path):
    _postgres_only(e2e_db)
    import psycopg
    from websockets.sync.client import connect

    server = _serve(_env(e2e_db.url, CHATLIMA_DB_POOL_SIZE="1", CHATLIMA_DB_POOL_TIMEOUT="1"), tmp_path, "server", 1)
    blocker = None
    try:
        token = server.register("exhausted", "a-long-pool-password-1", timeout=20)
        with connect(f"{server.ws}?token={token}", origin=server.base, open_timeout=20) as ws:
            # Another session holds a lock the server's next read must wait for: that request keeps the
            # pool's only connection while it waits.
            blocker = psycopg.connect(e2e_db.url)
            blocker.execute("LOCK TABLE knox_authtoken IN ACCESS EXCLUSIVE MODE")
            stuck: list = []
            first = threading.Thread(target=lambda: stuck.append(_post_stream(server.port, token, {"message": ASK})),
                                     daemon=True)
            first.start()
            _wait_for_lock_waiter(e2e_db)

            began = time.monotonic()
            status, headers, [body] = _post_stream(server.port, token, {"message": "Are you there?"})
            waited = time.monotonic() - began
            rest = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
            rest.request("GET", "/api/v1/conversations", headers={"Authorization": f"Bearer {token}"})
            rest_answer = rest.getresponse()
            rest_status, rest_body = rest_answer.status, json.loads(rest_answer.read())
            rest.close()
            ws.send(json.dumps({"type": "send_message", "message": "And you?", "client_message_id": "msg_poolws0001"}))
            frame = json.loads(ws.recv(timeout=10))

            blocker.rollback()  # the lock goes: the stuck request gets its connection back and goes on
            first.join(60)
            ws.send(json.dumps({"type": "send_message", "message": ASK, "client_message_id": "msg_poolws0002"}))
            after = []
            while not after or after[-1]["type"] not in ("message_complete", "error"):
                after.append(json.loads(ws.recv(timeout=30)))
    finally:
        if blocker is not None:
            blocker.close()
        server.stop(timeout=15)

    assert status == 503 and 0.9 <= waited < 6, (status, waited)
    assert body["error"]["code"] == "SERVICE_UNAVAILABLE" and set(body["error"]) == {"code", "message", "details"}
    assert headers.get("content-type") == "application/json" and headers.get("retry-after") == "1"
    assert rest_status == 503 and rest_body["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert frame["type"] == "error" and frame["code"] == "SERVICE_UNAVAILABLE", frame
    assert frame.get("request_id") == "msg_poolws0001"
    # The stuck request and the one after the lock went are answered in full.
    assert stuck and stuck[0][0] == 200 and stuck[0][2][-1]["type"] == "message_complete"
    assert after[-1]["type"] == "message_complete", after[-1]
    # Only those two exchanges were stored: the refused ones changed nothing.
    rows = e2e_db.rows("SELECT l.status FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id "
                       "WHERE u.username = 'exhausted'")
    assert [r["status"] for r in rows] == ["success", "success"]
    text = server.log_text()
    assert "Traceback" not in text and "Internal Server Error" not in text, text[-3000:]
