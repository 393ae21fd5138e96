"""WebSocket load benchmark: N concurrent clients streaming from the offline model through /ws/chat/.

One command:

    .venv/bin/python bench/ws_load.py --clients 500 --messages 2

By default it migrates a PostgreSQL database of its own (``--database-url``) and starts the app as
production runs it: ``python -m chatlima.serve`` with ``--workers`` daphne processes on a random
free loopback port, Redis (``--redis-url``) as Celery broker and channel layer, and a Celery worker.
The offline model is paced at ``--pace-ms`` per word. It runs the clients, prints the figures and
stops everything. ``--url ws://127.0.0.1:PORT/ws/chat/ --token T`` targets a server that is already
running instead (then the server's pace must match ``--pace-ms``).

Figures:
  * completed exchanges per second (wall clock of the whole run);
  * overhead to first chunk: time from sending to the first ``stream_chunk`` minus the model's own
    first-word delay (p50/p99);
  * stream duration / the model's own pace: (first chunk -> ``stream_end``) over the time the model
    itself takes to produce the words after the first (p50/p99);
  * errors; the server's peak RSS (VmHWM of each daphne process, when it was started here) and the
    CPU time the server and this client used (they share the machine's cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def stop_processes(*processes: subprocess.Popen | None, timeout: float = 15) -> None:
    """Terminate the bench's server and worker, killing any that do not stop within `timeout`."""
    for process in processes:
        if process is None:
            continue
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def server_env(args: argparse.Namespace, layer_prefix: str = "chatlima-ws-bench") -> dict[str, str]:
    """The server's environment as production runs it (bench/burst.py uses it too)."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": args.database_url,
        "DATABASE_CONN_MAX_AGE": "600",
        "CHATLIMA_OFFLINE_CHUNK_DELAY_MS": str(args.pace_ms),
        # Production settings: DEBUG records every query and would measure that instead.
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + os.urandom(24).hex(),
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_LOG_LEVEL": "WARNING",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CHATLIMA_USER_THROTTLE": "1000000/min",
        "CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT": "",
    })
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
        env["CHANNEL_LAYER_PREFIX"] = layer_prefix
    else:
        env.pop("REDIS_URL", None)
    return env


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ensure_database(url: str) -> None:
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def prepare_users(env: dict[str, str], count: int, name: str = "bench-ws") -> list[str]:
    """Migrate, then make (or reuse) `count` bench users with unlimited budgets; returns their tokens."""
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    code = (
        "import json\n"
        "from knox.models import AuthToken\n"
        "from accounts.models import User\n"
        "from usage.models import Budget\n"
        f"for i in range({count}):\n"
        f"    u, _ = User.objects.get_or_create(username=f'{name}-{{i}}')\n"
        "    Budget.objects.for_user(u)\n"
        "    Budget.objects.filter(user=u).update(token_limit=None, cost_limit=None)\n"
        "    print('TOKEN', AuthToken.objects.create(u)[1])\n"
    )
    out = subprocess.run([PY, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    return [line.split()[1] for line in out.stdout.splitlines() if line.startswith("TOKEN ")]


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"daphne did not listen on {port} within {timeout}s")


class Stats:
    def __init__(self) -> None:
        self.first_chunk: list[float] = []  # seconds from send to the first chunk
        self.first_chunk_later: list[float] = []  # the same for each client's later messages (no synchronized burst)
        self.stream: list[float] = []  # seconds from the first chunk to stream_end
        self.words: list[int] = []  # words in the answer
        self.completed = 0
        self.errors: list[str] = []


async def client(url: str, origin: str, messages: int, text: str, stats: Stats, start: asyncio.Event,
                 timeout: float, max_tokens: int | None = None, ramp: asyncio.Semaphore | None = None,
                 spread: float = 0.0) -> None:
    from websockets.asyncio.client import connect

    try:
        # Handshakes are ramped (real clients do not all connect in the same millisecond); the
        # streams then start together once every socket is open.
        async with ramp or asyncio.Semaphore(1):
            ws = await connect(url, origin=origin, open_timeout=120, max_size=None, ping_interval=None)
        async with ws:
            await start.wait()
            conversation_id = None
            for index in range(messages):
                if spread:
                    # Real users do not press Send in the same millisecond: a random pause before each message.
                    await asyncio.sleep(random.uniform(0, spread))
                body = {"type": "send_message", "message": text}
                if max_tokens:
                    body["max_tokens"] = max_tokens
                if conversation_id:
                    body["conversation_id"] = conversation_id
                first = None
                async with asyncio.timeout(timeout):
                    sent_at = time.perf_counter()
                    await ws.send(json.dumps(body))
                    while True:
                        event = json.loads(await ws.recv())
                        kind = event["type"]
                        if kind == "stream_start":
                            conversation_id = event["conversation_id"]
                        elif kind == "stream_chunk" and first is None:
                            first = time.perf_counter()
                            stats.first_chunk.append(first - sent_at)
                            if index:
                                stats.first_chunk_later.append(first - sent_at)
                        elif kind == "stream_end":
                            end = time.perf_counter()
                            if first is not None:
                                stats.stream.append(end - first)
                        elif kind == "message_complete":
                            stats.words.append(len(event["message"]["content"].split()))
                            stats.completed += 1
                            break
                        elif kind == "error":
                            stats.errors.append(f"{event.get('code')}: {event.get('message')}")
                            break
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
        stats.errors.append(f"{type(exc).__name__}: {exc}")


def start_celery_worker(env: dict[str, str], quiet: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(PY).with_name("celery")), "-A", "chatlima", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None,
    )


async def run(args: argparse.Namespace) -> int:
    server = worker = None
    port = None
    if args.url:
        url, tokens = args.url, [args.token]
        origin = args.origin or url.replace("ws://", "http://").split("/ws/")[0]
    else:
        env = server_env(args)
        ensure_database(args.database_url)
        tokens = prepare_users(env, args.users or args.clients)
        port = free_port()
        server = subprocess.Popen(
            [PY, "-m", "chatlima.serve", "--workers", str(args.workers), "-b", "127.0.0.1", "-p", str(port),
             "--app", args.asgi_app, "--websocket_connect_timeout", "60"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE if args.quiet else None,
        )
        if args.redis_url and not args.no_celery_worker:
            worker = start_celery_worker(env, args.quiet)
        await wait_for_port(port, 30)
        url = f"ws://127.0.0.1:{port}/ws/chat/"
        origin = f"http://127.0.0.1:{port}"
    try:
        stats = Stats()
        start = asyncio.Event()
        ramp = asyncio.Semaphore(args.connect_concurrency)
        tasks = [asyncio.ensure_future(client(f"{url}?token={tokens[i % len(tokens)]}", origin, args.messages, args.text, stats, start,
                                              args.timeout, args.max_tokens, ramp, args.spread_seconds)) for i in range(args.clients)]
        await asyncio.sleep(args.connect_seconds)  # let every socket open before the streams start together
        daphnes = children(server.pid) if server else []
        server_cpu = sum(cpu_seconds(pid) for pid in daphnes)
        client_cpu = resource.getrusage(resource.RUSAGE_SELF)
        began = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - began
        server_cpu = sum(cpu_seconds(pid) for pid in daphnes) - server_cpu
        after = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = after.ru_utime + after.ru_stime - client_cpu.ru_utime - client_cpu.ru_stime
        pace = args.pace_ms / 1000
        overhead = [(t - pace) * 1000 for t in stats.first_chunk]
        overhead_later = [(t - pace) * 1000 for t in stats.first_chunk_later]
        # The model takes one pace per word; the first word is already out when the clock starts.
        ratios = [d / (max(w - 1, 1) * pace) for d, w in zip(stats.stream, stats.words, strict=False)] if pace else []
        peaks = [peak_rss_mb(pid) or 0 for pid in daphnes]
        print(f"clients={args.clients} users={len(tokens)} messages/client={args.messages} pace={args.pace_ms} ms/word "
              f"words/answer~{statistics.median(stats.words) if stats.words else 0:.0f} "
              f"server={len(daphnes) or 'external'} daphne worker(s), redis={'yes' if args.redis_url else 'no'} "
              f"spread={args.spread_seconds} s")
        print(f"completed exchanges: {stats.completed} in {wall:.2f} s = {stats.completed / wall:.1f}/s")
        print(f"overhead to first chunk (ms): p50 {percentile(overhead, 50):.1f}  p99 {percentile(overhead, 99):.1f}")
        if overhead_later:
            print(f"  of later messages only (after the first, synchronized send): p50 "
                  f"{percentile(overhead_later, 50):.1f}  p99 {percentile(overhead_later, 99):.1f}")
        print(f"stream duration / model pace: p50 {percentile(ratios, 50):.2f}  p99 {percentile(ratios, 99):.2f}")
        print(f"errors: {len(stats.errors)}" + (f" (first: {stats.errors[0]})" if stats.errors else ""))
        if peaks:
            print(f"server peak RSS per worker: {', '.join(f'{p:.0f}' for p in peaks)} MB")
            print(f"CPU during the run: server {server_cpu:.1f} s, this client {client_cpu:.1f} s "
                  f"(of {wall * (os.cpu_count() or 1):.1f} s the machine's cores had)")
        return 1 if stats.errors else 0
    finally:
        stop_processes(server, worker)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--users", type=int, default=0, help="distinct users (default: one per client)")
    parser.add_argument("--messages", type=int, default=2, help="messages each client sends, one after another")
    parser.add_argument("--pace-ms", type=int, default=30, help="the offline model's delay per word")
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="cap each answer (the offline model stops there): short exchanges")
    parser.add_argument("--text", default="Tell me about the benchmark.")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgres://root@127.0.0.1:5432/chatlima_h4_bench"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1"),
                        help="Celery broker and channel layer; '' runs tasks inline with the in-memory layer")
    parser.add_argument("--no-celery-worker", action="store_true", help="queue tasks but start no worker")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="daphne processes")
    parser.add_argument("--url", help="target a running server instead of starting one")
    parser.add_argument("--token", help="API token for --url")
    parser.add_argument("--origin")
    parser.add_argument("--connect-seconds", type=float, default=15.0,
                        help="time allowed for every socket to open before the streams start")
    parser.add_argument("--connect-concurrency", type=int, default=25, help="handshakes in flight at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per exchange")
    parser.add_argument("--spread-seconds", type=float, default=0.0,
                        help="each client pauses a random 0..S seconds before each message (0: all send at once)")
    parser.add_argument("--asgi-app", default="chatlima.asgi:application", help="what daphne serves")
    parser.add_argument("--quiet", action="store_true", help="hide the server's log")
    args = parser.parse_args()
    if args.url and not args.token:
        parser.error("--url needs --token")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
