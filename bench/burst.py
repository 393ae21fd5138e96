"""Burst benchmark: N SSE streams sent in the same instant at ONE server process on PostgreSQL.

One command:

    .venv/bin/python bench/burst.py --streams 500 1000

It migrates a PostgreSQL database of its own (``--database-url``), checks and prints the server's
``max_connections`` (a stock PostgreSQL has 100), starts the app as production runs it
(``python -m chatlima.serve --workers 1``, DEBUG off; with ``--redis-url`` also Redis as broker and
a Celery worker), opens N TCP connections, then sends N ``POST /api/v1/chat/stream`` requests at
once (one user each, the offline model paced at ``--pace-ms`` per word) and reads every stream to its
end. Each burst in ``--streams`` runs in turn against the same server.

Figures per burst:
  * errors (any answer but 200, an ``error`` event, a stream that ends without ``message_complete``,
    a dropped connection or a timeout), by kind, and completed streams;
  * time to first chunk (send -> first ``stream_chunk``) and duration (send -> ``message_complete``),
    p50/p99;
  * the peak number of PostgreSQL client connections, sampled every 20 ms from ``pg_stat_activity``:
    to the bench database (the server, the Celery worker and this sampler) and to the whole server
    (other users of the same PostgreSQL included);
  * lines in the server's log naming a traceback or ``too many clients``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ws_load import (
    PY,
    ROOT,
    ensure_database,
    free_port,
    percentile,
    prepare_users,
    server_env,
    start_celery_worker,
    stop_processes,
    wait_for_port,
)

ASK = "Tell me about the burst benchmark."


class Burst:
    def __init__(self) -> None:
        self.first_chunk: list[float] = []
        self.duration: list[float] = []
        self.completed = 0
        self.errors: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status = int((await reader.readline()).split()[1])
    headers = {}
    while True:
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            return status, headers
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()


async def body_parts(reader: asyncio.StreamReader, headers: dict[str, str]):
    """The response body as it arrives: chunked, sized or up to EOF."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while data := await reader.read(65536):
            yield data


async def one_stream(port: int, token: str, burst: Burst, go: asyncio.Event, ready: asyncio.Semaphore,
                     timeout: float, max_tokens: int | None) -> None:
    body = {"message": ASK}
    if max_tokens:
        body["max_tokens"] = max_tokens
    payload = json.dumps(body).encode()
    request = (
        f"POST /api/v1/chat/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    try:
        async with ready:  # connections are opened a few at a time; the requests then leave together
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 60)
    except (OSError, TimeoutError) as exc:
        burst.error(f"connect: {type(exc).__name__}")
        return
    try:
        await go.wait()
        sent = time.perf_counter()
        async with asyncio.timeout(timeout):
            writer.write(request)
            await writer.drain()
            status, headers = await read_head(reader)
            if status != 200:
                raw = b"".join([part async for part in body_parts(reader, headers)])
                try:
                    code = json.loads(raw)["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = f"({headers.get('content-type', 'no content type').split(';')[0]}, not the JSON error body)"
                burst.error(f"HTTP {status} {code}")
                return
            buffer, first, last = b"", None, ""
            async for part in body_parts(reader, headers):
                buffer += part
                while b"\n\n" in buffer:
                    frame, buffer = buffer.split(b"\n\n", 1)
                    data = next((line[6:] for line in frame.split(b"\n") if line.startswith(b"data: ")), None)
                    if data is None:
                        continue
                    event = json.loads(data)
                    last = event["type"]
                    if last == "stream_chunk" and first is None:
                        first = time.perf_counter()
                        burst.first_chunk.append(first - sent)
                    elif last == "message_complete":
                        burst.duration.append(time.perf_counter() - sent)
                        burst.completed += 1
                    elif last == "error":
                        burst.error(f"event error {event.get('code')}")
            if last not in ("message_complete", "error"):
                burst.error(f"stream ended after {last or 'nothing'}")
    except TimeoutError:
        burst.error("timeout")
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
        burst.error(f"{type(exc).__name__}")
    finally:
        writer.close()


class ConnectionSampler:
    """The peak of PostgreSQL's client connections, to the bench database and in all."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.peak_here = self.peak_all = 0
        self._task: asyncio.Task | None = None

    async def snapshot(self, conn) -> tuple[int, int]:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE datname = current_database()), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'")
        here, everywhere = await cur.fetchone()
        return here, everywhere

    async def _run(self) -> None:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while True:
                here, everywhere = await self.snapshot(conn)
                self.peak_here, self.peak_all = max(self.peak_here, here), max(self.peak_all, everywhere)
                await asyncio.sleep(0.02)

    def start(self) -> None:
        self.peak_here = self.peak_all = 0
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def pg_figures(url: str) -> tuple[str, int, int]:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        max_connections = (await (await conn.execute("SHOW max_connections")).fetchone())[0]
        here, everywhere = await ConnectionSampler(url).snapshot(conn)
    return max_connections, here, everywhere


def log_problems(log: Path) -> tuple[int, int]:
    text = log.read_text(errors="replace")
    return text.count("Traceback"), text.count("too many clients")


async def run_burst(n: int, port: int, tokens: list[str], args: argparse.Namespace, sampler: ConnectionSampler) -> Burst:
    burst = Burst()
    go = asyncio.Event()
    ready = asyncio.Semaphore(50)
    tasks = [asyncio.ensure_future(one_stream(port, tokens[i], burst, go, ready, args.timeout, args.max_tokens))
             for i in range(n)]
    await asyncio.sleep(args.connect_seconds)  # every connection open before the requests leave
    sampler.start()
    began = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    await asyncio.sleep(0.2)
    await sampler.stop()
    errors = sum(burst.errors.values())
    print(f"burst of {n} streams: completed {burst.completed}, errors {errors}"
          + (f" {dict(sorted(burst.errors.items(), key=lambda kv: -kv[1]))}" if errors else "") + f", wall {wall:.1f} s")
    print(f"  time to first chunk (s): p50 {percentile(burst.first_chunk, 50):.2f}  p99 {percentile(burst.first_chunk, 99):.2f}"
          f"   duration (s): p50 {percentile(burst.duration, 50):.2f}  p99 {percentile(burst.duration, 99):.2f}"
          + (f"  (answer alone ~{statistics.median(burst.duration) - statistics.median(burst.first_chunk):.2f})"
             if burst.duration and burst.first_chunk else ""))
    print(f"  peak PostgreSQL client connections: {sampler.peak_here} to the bench database, "
          f"{sampler.peak_all} on the whole server")
    return burst


async def run(args: argparse.Namespace) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # N sockets here and N in the server
    env = server_env(args, "chatlima-burst-bench")
    ensure_database(args.database_url)
    max_connections, here, everywhere = await pg_figures(args.database_url)
    print(f"PostgreSQL max_connections = {max_connections}; client connections before: {here} to the bench "
          f"database, {everywhere} on the whole server")
    if max_connections != "100" and not args.any_max_connections:
        print("this bench is about a stock PostgreSQL: max_connections must be 100 (or --any-max-connections)")
        return 2
    tokens = prepare_users(env, max(args.streams), "bench-burst")
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="burst-server-", suffix=".log")[1])
    server = subprocess.Popen(
        [PY, "-m", "chatlima.serve", "--workers", "1", "-b", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    worker = start_celery_worker(env, quiet=True) if args.redis_url else None
    pool = env.get("CHATLIMA_DB_POOL_SIZE", "unset")
    print(f"server: chatlima.serve --workers 1 (CHATLIMA_DB_POOL_SIZE {pool}), pace {args.pace_ms} ms/word, "
          f"celery worker: {'yes' if worker else 'no'}; server log {log}")
    sampler = ConnectionSampler(args.database_url)
    failed = False
    try:
        await wait_for_port(port, 30)
        for n in args.streams:
            burst = await run_burst(n, port, tokens, args, sampler)
            failed = failed or bool(burst.errors)
            await asyncio.sleep(2)
    finally:
        stop_processes(server, worker)
    tracebacks, too_many = log_problems(log)
    print(f"server log: {tracebacks} tracebacks, {too_many} 'too many clients'")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[500, 1000], help="burst sizes, run in turn")
    parser.add_argument("--pace-ms", type=int, default=30, help="the offline model's delay per word")
    parser.add_argument("--max-tokens", type=int, default=None, help="cap each answer (short exchanges)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgres://root@127.0.0.1:5432/chatlima_burst_bench"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1"),
                        help="Celery broker and channel layer, with a Celery worker; '' runs tasks inline")
    parser.add_argument("--connect-seconds", type=float, default=10.0,
                        help="time allowed to open every connection before the requests leave together")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per stream")
    parser.add_argument("--any-max-connections", action="store_true", help="run on a non-stock PostgreSQL too")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
