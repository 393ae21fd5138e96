"""WebSocket load benchmark: N concurrent clients streaming from the offline model through /ws/chat/.

One command:

    .venv/bin/python bench/ws_load.py --clients 500 --messages 2

By default it migrates a PostgreSQL database of its own (``--database-url``) and starts the app as
production runs it: ``python -m chatlima.serve`` with ``--workers`` daphne processes on a random
free loopback port, Redis (``--redis-url``) as Celery broker and channel layer, and a Celery worker.
The offline model is paced at ``--pace-ms`` per word. It runs the clients, prints the figures and
stops everything. ``--url ws://127.0.0.1:PORT/ws/chat/ --token T`` targets a server that is already
running instead (then the server's pace must match ``--pace-ms``). ``--upstream-chunks K
--upstream-delay-ms D`` streams from bench/upstream.py (OpenAI-compatible, K chunks D ms apart, as
the server's OPENAI_BASE_URL) instead of the offline model.

Modes:
  * ``--arrivals together`` (default): every client sends at once, ``--messages`` each;
  * ``--arrivals poisson --rate 100 --duration 60``: new exchanges at Poisson times on ``--clients``
    open sockets (each arrival takes an idle one), the issue's spread-arrivals load;
  * ``--cpu-exchanges E`` (with either): then two rounds of E exchanges, short answers
    (``--cpu-short-tokens``) and long ones (``--cpu-long-tokens``), ``--cpu-concurrency`` at a time;
    the daphne processes' CPU (from /proc) of each round is exchanges x per-exchange + frames x
    per-frame, so the two rounds give "server CPU per exchange (prepare + settle)" and "server CPU
    per frame sent" (frames as the client counted them, every event type).

Figures:
  * completed exchanges per second (wall clock of the whole run);
  * overhead to first chunk: time from sending to the first ``stream_chunk`` minus the model's own
    first-word delay (p50/p99);
  * stream duration / the model's own pace: (first chunk -> ``stream_end``) over the time the model
    itself takes to produce the words after the first (p50/p99);
  * in poisson mode the same, over the arrivals, and the server CPU per exchange over the run;
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
UPSTREAM_MODEL = "bench-model"  # bench/upstream.py's one model


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
        self.chunk_frames = 0  # stream_chunk frames received, all clients
        self.errors: list[str] = []


async def client(url: str, origin: str, messages: int, text: str, stats: Stats, start: asyncio.Event,
                 timeout: float, max_tokens: int | None = None, ramp: asyncio.Semaphore | None = None,
                 spread: float = 0.0, model: str | None = None) -> None:
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
                if model:
                    body["model"] = model
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
                            stats.chunk_frames += 1
                            first = time.perf_counter()
                            stats.first_chunk.append(first - sent_at)
                            if index:
                                stats.first_chunk_later.append(first - sent_at)
                        elif kind == "stream_chunk":
                            stats.chunk_frames += 1
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


class Model:
    """What the model itself takes: the offline model's pace per word, or bench/upstream.py's chunks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.upstream = bool(args.upstream_chunks)
        self.pace = (args.upstream_delay_ms if self.upstream else args.pace_ms) / 1000
        self.chunks = args.upstream_chunks

    @property
    def first(self) -> float:
        # The offline model sleeps one pace before its first word; the upstream sends its first chunk at once.
        return 0.0 if self.upstream else self.pace

    def stream(self, words: int, max_tokens: int | None = None) -> float:
        """Its own time from the first chunk to the last."""
        if self.upstream:
            chunks = min(self.chunks, max_tokens) if max_tokens else self.chunks
            return max(chunks - 1, 1) * self.pace
        return max(words - 1, 1) * self.pace


async def open_sockets(url: str, tokens: list[str], origin: str, count: int, concurrency: int) -> list:
    """`count` open sockets, one user each in turn, `concurrency` handshakes at a time."""
    from websockets.asyncio.client import connect

    ramp = asyncio.Semaphore(concurrency)

    async def one(i: int):
        async with ramp:
            return await connect(f"{url}?token={tokens[i % len(tokens)]}", origin=origin, open_timeout=120,
                                 max_size=None, ping_interval=None)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def one_exchange(ws, body: dict, timeout: float) -> dict:
    """Send one message on an open socket; its figures: seconds to the first chunk and to
    stream_end (from the send), frames received, words, or the error."""
    out: dict = {"frames": 0, "first": None, "end": None, "words": 0, "error": None}
    try:
        async with asyncio.timeout(timeout):
            sent = time.perf_counter()
            await ws.send(json.dumps(body))
            while True:
                event = json.loads(await ws.recv())
                out["frames"] += 1
                kind = event["type"]
                if kind == "stream_chunk" and out["first"] is None:
                    out["first"] = time.perf_counter() - sent
                elif kind == "stream_end":
                    out["end"] = time.perf_counter() - sent
                elif kind == "message_complete":
                    out["words"] = len(event["message"]["content"].split())
                    return out
                elif kind == "error":
                    out["error"] = f"{event.get('code')}: {event.get('message')}"
                    return out
    except Exception as exc:  # noqa: BLE001 - every failure is counted
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def poisson_run(args: argparse.Namespace, sockets: list, model: Model, daphnes: list[int]) -> int:
    """New exchanges at Poisson times (`--rate` a second for `--duration` s), each on an idle socket."""
    idle: asyncio.Queue = asyncio.Queue()
    for ws in sockets:
        idle.put_nowait(ws)
    results: list[dict] = []
    waited: list[float] = []

    async def arrival(at: float) -> None:
        ws = await idle.get()
        waited.append(time.perf_counter() - at)
        try:
            result = await one_exchange(ws, message_body(args), args.timeout)
            result["at"] = at - began
            results.append(result)
        finally:
            idle.put_nowait(ws)

    rng = random.Random(args.seed)
    cpu_before = sum(cpu_seconds(pid) for pid in daphnes)
    began = time.perf_counter()
    tasks, t = [], 0.0
    while True:
        t += rng.expovariate(args.rate)
        if t >= args.duration:
            break
        await asyncio.sleep(max(0.0, began + t - time.perf_counter()))
        tasks.append(asyncio.ensure_future(arrival(time.perf_counter())))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - began
    cpu = sum(cpu_seconds(pid) for pid in daphnes) - cpu_before
    errors = [r["error"] for r in results if r["error"]]
    ok = [r for r in results if not r["error"] and r["first"] is not None]
    overhead = [(r["first"] - model.first) * 1000 for r in ok]
    ratios = [(r["end"] - r["first"]) / model.stream(r["words"], args.max_tokens) for r in ok if r["end"]]
    print(f"arrivals: poisson, {args.rate:g}/s for {args.duration:g} s = {len(tasks)} exchanges on {len(sockets)} "
          f"sockets; model: {model_label(args)}; server={len(daphnes) or 'external'} daphne worker(s)")
    print(f"completed exchanges: {len(ok)} in {wall:.2f} s = {len(ok) / wall:.1f}/s "
          f"(waits for an idle socket p99 {percentile(waited, 99) * 1000:.1f} ms)")
    print(f"overhead to first chunk (ms): p50 {percentile(overhead, 50):.1f}  p99 {percentile(overhead, 99):.1f}"
          "  (target: p99 <= 100)")
    print(f"stream duration / model pace: p50 {percentile(ratios, 50):.2f}  p99 {percentile(ratios, 99):.2f}")
    # Where the slow starts fall: spread over the run (the load), or in bursts (something periodic).
    slow = [r for r, o in zip(ok, overhead, strict=True) if o > 100]
    buckets = [0] * (int(args.duration // 5) + 1)
    for r in slow:
        buckets[min(int(r["at"] // 5), len(buckets) - 1)] += 1
    print(f"first chunk over 100 ms: {len(slow)} of {len(ok)}; by 5 s of arrivals: {buckets}")
    frames = [r["frames"] for r in ok]
    print(f"frames per exchange (every event): p50 {percentile(frames, 50):.0f}  min {min(frames, default=0)}"
          f"  max {max(frames, default=0)}")
    print(f"errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    if daphnes:
        print(f"server CPU during the arrivals: {cpu:.1f} s = {cpu / max(len(ok), 1) * 1000:.2f} ms per exchange "
              "(frames included)")
    return len(errors)


async def cpu_split(args: argparse.Namespace, sockets: list, daphnes: list[int]) -> None:
    """Server CPU per exchange and per frame: two rounds of `--cpu-exchanges` exchanges, short answers
    then long ones, each as CPU = exchanges x per_exchange + frames x per_frame; two equations, two unknowns."""
    if not daphnes:
        print("server CPU per exchange / per frame: needs a server started here")
        return
    rounds = []
    # A first, uncounted round warms what a process does once (imports, pooled connections, caches):
    # without it the short round carried that, and the split moved by 2x between runs.
    for cap in (args.cpu_short_tokens, args.cpu_short_tokens, args.cpu_long_tokens):
        idle: asyncio.Queue = asyncio.Queue()
        for ws in sockets[:args.cpu_concurrency]:
            idle.put_nowait(ws)
        results: list[dict] = []

        async def one(cap: int = cap, idle: asyncio.Queue = idle, results: list = results) -> None:
            ws = await idle.get()
            try:
                results.append(await one_exchange(ws, message_body(args, cap), args.timeout))
            finally:
                idle.put_nowait(ws)

        await asyncio.sleep(1)  # let the previous round's settles and saves finish
        before = sum(cpu_seconds(pid) for pid in daphnes)
        await asyncio.gather(*(one() for _ in range(args.cpu_exchanges)))
        await asyncio.sleep(0.5)
        cpu = sum(cpu_seconds(pid) for pid in daphnes) - before
        errors = sum(1 for r in results if r["error"])
        rounds.append((len(results), sum(r["frames"] for r in results), cpu, errors))
    (e1, f1, c1, x1), (e2, f2, c2, x2) = rounds[1:]
    per_frame = (c2 / e2 - c1 / e1) / (f2 / e2 - f1 / e1) if f2 / e2 != f1 / e1 else float("nan")
    per_exchange = c1 / e1 - f1 / e1 * per_frame
    print(f"CPU split: {e1} exchanges x {f1 / e1:.1f} frames = {c1:.2f} s, {e2} x {f2 / e2:.1f} frames = {c2:.2f} s "
          f"({args.cpu_concurrency} at a time; errors {x1 + x2})")
    print(f"server CPU per exchange (prepare + settle): {per_exchange * 1000:.2f} ms  (target <= 3 ms)")
    print(f"server CPU per frame sent: {per_frame * 1e6:.1f} us  (target <= 50 us)")


def message_body(args: argparse.Namespace, max_tokens: int | None = None) -> dict:
    body = {"type": "send_message", "message": args.text}
    if max_tokens or args.max_tokens:
        body["max_tokens"] = max_tokens or args.max_tokens
    if args.upstream_chunks:
        body["model"] = UPSTREAM_MODEL
    return body


def model_label(args: argparse.Namespace) -> str:
    if args.upstream_chunks:
        return f"bench/upstream.py, {args.upstream_chunks} chunks {args.upstream_delay_ms:g} ms apart"
    return f"offline, {args.pace_ms} ms/word"


def spawn_upstream(chunks: int, delay_ms: float, timeout: float = 20) -> tuple[subprocess.Popen, int]:
    """bench/upstream.py on a free port, `chunks` deltas `delay_ms` apart, once it listens (every
    bench that needs the local upstream starts it here)."""
    port = free_port()
    process = subprocess.Popen([PY, str(ROOT / "bench" / "upstream.py"), "--port", str(port),
                                "--chunks", str(chunks), "--delay-ms", str(delay_ms)])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.1)
    stop_processes(process)
    raise SystemExit(f"bench/upstream.py did not listen on {port} within {timeout:g} s")


def start_upstream(args: argparse.Namespace, env: dict[str, str]) -> subprocess.Popen:
    """The local upstream as the server's OpenAI-compatible endpoint, its model in the catalogue."""
    process, port = spawn_upstream(args.upstream_chunks, args.upstream_delay_ms)
    env.update({"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    subprocess.run([PY, "manage.py", "refresh_models"], cwd=ROOT, env=env, check=True, capture_output=True)
    return process


def server_log(args: argparse.Namespace):
    """Where the server's log goes: the terminal, or with --quiet a file (never an unread pipe)."""
    if not args.quiet:
        return None
    path = Path(args.server_log)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"server log: {path}")
    return path.open("w")


def start_celery_worker(env: dict[str, str], quiet: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(PY).with_name("celery")), "-A", "chatlima", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if quiet else None,
    )


async def run(args: argparse.Namespace) -> int:
    server = worker = upstream = None
    port = None
    model = Model(args)
    if args.url:
        url, tokens = args.url, [args.token]
        origin = args.origin or url.replace("ws://", "http://").split("/ws/")[0]
    else:
        env = server_env(args)
        ensure_database(args.database_url)
        tokens = prepare_users(env, args.users or args.clients)
        if args.upstream_chunks:
            upstream = start_upstream(args, env)
        port = free_port()
        server = subprocess.Popen(
            [PY, "-m", "chatlima.serve", "--workers", str(args.workers), "-b", "127.0.0.1", "-p", str(port),
             "--app", args.asgi_app, "--websocket_connect_timeout", "60"],
            # --quiet sends the log to a file: a pipe nobody reads fills after ~600 log lines and then
            # blocks the server mid-write (the "608 completed" stall of the first round was exactly that).
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=server_log(args),
        )
        if args.redis_url and not args.no_celery_worker:
            worker = start_celery_worker(env, args.quiet)
        await wait_for_port(port, 30)
        url = f"ws://127.0.0.1:{port}/ws/chat/"
        origin = f"http://127.0.0.1:{port}"
    try:
        if args.arrivals == "poisson" or args.cpu_exchanges:
            daphnes = children(server.pid) if server else []
            sockets = await open_sockets(url, tokens, origin, args.clients, args.connect_concurrency)
            profile = None
            if args.py_spy and daphnes:
                from profiling import Profile

                profile = Profile(args.py_spy, daphnes[0], Path(args.profile))
            try:
                failed = 0
                if args.arrivals == "poisson":
                    failed = await poisson_run(args, sockets, model, daphnes)
                if args.cpu_exchanges:
                    await cpu_split(args, sockets, daphnes)
                peaks = [peak_rss_mb(pid) or 0 for pid in daphnes]
                if peaks:
                    print(f"server peak RSS per worker: {', '.join(f'{p:.0f}' for p in peaks)} MB")
                return 1 if failed else 0
            finally:
                if profile is not None:
                    from profiling import top

                    profile.stop()
                    print(f"== profile of the first daphne process ==\n{top(Path(args.profile), 25)}")
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        stats = Stats()
        start = asyncio.Event()
        ramp = asyncio.Semaphore(args.connect_concurrency)
        tasks = [asyncio.ensure_future(client(f"{url}?token={tokens[i % len(tokens)]}", origin, args.messages, args.text, stats, start,
                                              args.timeout, args.max_tokens, ramp, args.spread_seconds,
                                              UPSTREAM_MODEL if args.upstream_chunks else None))
                 for i in range(args.clients)]
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
        overhead = [(t - model.first) * 1000 for t in stats.first_chunk]
        overhead_later = [(t - model.first) * 1000 for t in stats.first_chunk_later]
        # The model takes one pace per word; the first word is already out when the clock starts.
        ratios = [d / model.stream(w, args.max_tokens) for d, w in zip(stats.stream, stats.words, strict=False)
                  ] if model.pace else []
        peaks = [peak_rss_mb(pid) or 0 for pid in daphnes]
        print(f"clients={args.clients} users={len(tokens)} messages/client={args.messages} model: {model_label(args)} "
              f"words/answer~{statistics.median(stats.words) if stats.words else 0:.0f} "
              f"server={len(daphnes) or 'external'} daphne worker(s), redis={'yes' if args.redis_url else 'no'} "
              f"spread={args.spread_seconds} s")
        print(f"completed exchanges: {stats.completed} in {wall:.2f} s = {stats.completed / wall:.1f}/s, "
              f"{stats.chunk_frames / max(stats.completed, 1):.1f} chunk frames each")
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
        stop_processes(server, worker, upstream)


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
    parser.add_argument("--arrivals", choices=["together", "poisson"], default="together",
                        help="together: every client sends at once (--messages each); poisson: new exchanges at "
                             "Poisson times, --rate a second for --duration s, on --clients open sockets")
    parser.add_argument("--rate", type=float, default=100.0, help="poisson: new exchanges a second")
    parser.add_argument("--duration", type=float, default=60.0, help="poisson: seconds of arrivals")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--cpu-exchanges", type=int, default=0,
                        help="then measure server CPU per exchange and per frame: two rounds of this many exchanges")
    parser.add_argument("--cpu-concurrency", type=int, default=50, help="exchanges at a time in those rounds")
    parser.add_argument("--cpu-short-tokens", type=int, default=3, help="max_tokens of the short round")
    parser.add_argument("--cpu-long-tokens", type=int, default=100, help="max_tokens of the long round")
    parser.add_argument("--upstream-chunks", type=int, default=0,
                        help="stream from bench/upstream.py (OpenAI-compatible) with this many chunks instead of "
                             "the offline model")
    parser.add_argument("--upstream-delay-ms", type=float, default=20.0, help="the upstream's delay between chunks")
    parser.add_argument("--py-spy", default="", help="py-spy's path: profile the first daphne process (poisson / cpu modes)")
    parser.add_argument("--profile", default="/tmp/chatlima-bench-profiles/ws_load.txt", help="where that profile goes")
    parser.add_argument("--asgi-app", default="chatlima.asgi:application", help="what daphne serves")
    parser.add_argument("--quiet", action="store_true", help="send the server's log to --server-log")
    parser.add_argument("--server-log", default="/tmp/chatlima-bench-profiles/ws_load-server.log")
    args = parser.parse_args()
    if args.url and not args.token:
        parser.error("--url needs --token")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
