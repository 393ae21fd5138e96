"""ChatLima against Open WebUI, side by side in one run, on one local upstream (not in CI).

    .venv/bin/python bench/peer_compare.py --clients 100

It starts `bench/upstream.py` (an OpenAI-compatible server streaming `--chunks` chunks `--delay-ms`
apart), then, one at a time so they never share the cores:

* the upstream alone: N clients straight to it (what the model itself costs);
* Open WebUI: installed from PyPI into its own virtualenv outside the repo (`--owui-venv`; PyTorch's
  CPU build first, from this machine's disk), one uvicorn process on PostgreSQL, pointed at the
  upstream as its OpenAI connection, with sign-in and title/tag/follow-up generation off; N clients
  `POST /api/chat/completions` with `stream: true`;
* ChatLima: one daphne process (`python -m chatlima.serve --workers 1`) with production settings on
  PostgreSQL, Redis and a Celery worker, the upstream as its OpenAI-compatible endpoint; N users
  each `POST /api/v1/chat/stream` (SSE), then N users each over `/ws/chat/` (WebSocket).

For each it prints the time to the first chunk of text and the duration (send to the end of the
answer), p50 and p99, the errors, and the overhead over the upstream alone; then ChatLima's
overhead as a share of Open WebUI's (the issue's target: at most 0.5). Every client starts at once.
Before it is measured, each server answers `--warm` clients (10; not counted), so no measured run is
a process's first (`--warm 0` measures a cold start: then ChatLima's first door also pays the
process's first connections and threads). `--py-spy PATH` profiles daphne during each door's run
and prints the profile's top lines (bench/profiling.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profiling import Profile, top
from ws_load import (
    ROOT,
    children,
    ensure_database,
    free_port,
    peak_rss_mb,
    percentile,
    prepare_users,
    server_env,
    spawn_upstream,
    start_celery_worker,
    stop_processes,
    wait_for_port,
)

PY = sys.executable
MODEL = "bench-model"
QUESTION = "Tell me about the weather on the coast this week, please."
OWUI_ENV = {
    "WEBUI_AUTH": "False", "ENABLE_OLLAMA_API": "False", "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1",
    "RAG_EMBEDDING_ENGINE": "openai", "ENABLE_TITLE_GENERATION": "False", "ENABLE_TAGS_GENERATION": "False",
    "ENABLE_FOLLOW_UP_GENERATION": "False", "ENABLE_AUTOCOMPLETE_GENERATION": "False",
    "ENABLE_RETRIEVAL_QUERY_GENERATION": "False", "ENABLE_WEB_SEARCH": "False", "ENABLE_IMAGE_GENERATION": "False",
    "WEBUI_SECRET_KEY": "bench-peer-compare",
    # Else the connection saved by an earlier run (its upstream on another port) wins over the env.
    "ENABLE_PERSISTENT_CONFIG": "False", "GLOBAL_LOG_LEVEL": "WARNING", "UVICORN_WORKERS": "1",
}


@dataclass
class Result:
    name: str
    first: list[float] = field(default_factory=list)
    duration: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_mb: float | None = None

    def p(self, values: list[float], q: float) -> float:
        return percentile(values, q) * 1000


def install_open_webui(venv: Path) -> Path:
    """Open WebUI's own virtualenv (made once): torch's CPU build from this disk, then open-webui and
    the PostgreSQL driver its SQLAlchemy URL needs."""
    exe = venv / "bin" / "open-webui"
    if exe.exists():
        return exe
    print(f"installing Open WebUI into {venv} (once; several minutes)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "open-webui", "psycopg2-binary"], check=True)
    return exe


# ---- clients ---------------------------------------------------------------------------------

async def sse_client(http, url: str, headers: dict, body: dict, is_text, result: Result, start: asyncio.Event,
                     timeout: float) -> None:
    """One streamed POST; `is_text(event_json)` tells a chunk of answer text."""
    await start.wait()
    sent = time.perf_counter()
    first = None
    try:
        async with asyncio.timeout(timeout):
            async with http.stream("POST", url, headers=headers, json=body) as response:
                if response.status_code != 200:
                    result.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                    return
                failed = None
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        continue
                    try:
                        event = json.loads(data)
                    except ValueError:
                        continue
                    if event.get("type") == "error" or "error" in event and event.get("type") is None:
                        failed = str(event)[:200]
                    if first is None and is_text(event):
                        first = time.perf_counter() - sent
        if failed or first is None:
            result.errors.append(failed or "no text arrived")
            return
        result.first.append(first)
        result.duration.append(time.perf_counter() - sent)
    except Exception as exc:  # noqa: BLE001 - a bench counts every failure as an error
        result.errors.append(f"{type(exc).__name__}: {exc}"[:200])


async def ws_client(url: str, origin: str, result: Result, start: asyncio.Event, timeout: float) -> None:
    from websockets.asyncio.client import connect

    try:
        async with connect(url, origin=origin, open_timeout=120, max_size=None, ping_interval=None) as ws:
            await start.wait()
            sent = time.perf_counter()
            first = None
            async with asyncio.timeout(timeout):
                await ws.send(json.dumps({"type": "send_message", "message": QUESTION, "model": MODEL}))
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "stream_chunk" and first is None:
                        first = time.perf_counter() - sent
                    elif event["type"] == "message_complete":
                        break
                    elif event["type"] == "error":
                        result.errors.append(f"{event.get('code')}: {event.get('message')}"[:200])
                        return
            result.first.append(first if first is not None else float("nan"))
            result.duration.append(time.perf_counter() - sent)
    except Exception as exc:  # noqa: BLE001
        result.errors.append(f"{type(exc).__name__}: {exc}"[:200])


async def run_clients(make, n: int) -> None:
    start = asyncio.Event()
    tasks = [asyncio.create_task(make(i, start)) for i in range(n)]
    await asyncio.sleep(0.5)  # every client ready (sockets open) before they all send
    start.set()
    await asyncio.gather(*tasks)


def http_client(n: int):
    import httpx

    return httpx.AsyncClient(timeout=httpx.Timeout(300, connect=120), limits=httpx.Limits(
        max_connections=n + 10, max_keepalive_connections=n + 10))


async def measure_sse(name: str, url: str, headers_for, body: dict, is_text, n: int, timeout: float) -> Result:
    result = Result(name)
    async with http_client(n) as http:
        await run_clients(lambda i, start: sse_client(http, url, headers_for(i), body, is_text, result, start, timeout), n)
    return result


# ---- servers ---------------------------------------------------------------------------------

async def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited with {process.returncode}")
            try:
                if (await http.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


async def open_webui(args, upstream_url: str, n: int, timeout: float) -> Result:
    import httpx

    exe = install_open_webui(Path(args.owui_venv))
    database = args.database_url + "_owui"
    ensure_database(database)
    data_dir = Path(args.owui_venv) / "data"
    data_dir.mkdir(exist_ok=True)
    port = free_port()
    env = {**os.environ, **OWUI_ENV, "DATA_DIR": str(data_dir), "OPENAI_API_BASE_URL": upstream_url,
           "OPENAI_API_KEY": "bench", "DATABASE_URL": database.replace("postgres://", "postgresql://", 1)}
    log = open(data_dir / "open-webui.log", "w")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=data_dir, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(base + "/health", 300, process)
        async with httpx.AsyncClient(timeout=30) as http:
            token = (await http.post(base + "/api/v1/auths/signin", json={"email": "", "password": ""})).json()["token"]
            await http.get(base + "/api/models", headers={"Authorization": f"Bearer {token}"})
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
        is_text = lambda e: bool((e.get("choices") or [{}])[0].get("delta", {}).get("content"))  # noqa: E731
        if args.warm:
            await measure_sse("warm-up", base + "/api/chat/completions",
                              lambda i: {"Authorization": f"Bearer {token}"}, body, is_text, args.warm, timeout)
        result = await measure_sse("Open WebUI", base + "/api/chat/completions",
                                   lambda i: {"Authorization": f"Bearer {token}"}, body, is_text, n, timeout)
        result.peak_mb = max((peak_rss_mb(pid) or 0 for pid in [process.pid, *children(process.pid)]), default=None)
        return result
    finally:
        stop_processes(process)
        log.close()


async def chatlima(args, upstream_url: str, n: int, timeout: float) -> list[Result]:
    args.pace_ms = 0
    env = server_env(args, layer_prefix="chatlima-peer-bench")
    env.update({"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": upstream_url})
    ensure_database(args.database_url)
    tokens = prepare_users(env, n, name="bench-peer")
    subprocess.run([PY, "manage.py", "refresh_models"], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    out = subprocess.DEVNULL if args.quiet else None
    server = subprocess.Popen([PY, "-m", "chatlima.serve", "--workers", "1", "-b", "127.0.0.1", "-p", str(port)],
                              cwd=ROOT, env=env, stdout=out, stderr=out)
    worker = start_celery_worker(env, True) if args.redis_url else None
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_for_port(port, 60)
        await wait_http(base + "/health", 60, server)
        body = {"message": QUESTION, "model": MODEL}
        daphne = children(server.pid)[0]
        results = []
        if args.warm:
            # Both doors once, a few clients each, so neither measured run is the process's first.
            await measure_sse("warm-up", base + "/api/v1/chat/stream", lambda i: {"Authorization": f"Bearer {tokens[i]}"},
                              body, lambda e: e.get("type") == "stream_chunk", args.warm, timeout)
            await run_clients(lambda i, start: ws_client(
                f"ws://127.0.0.1:{port}/ws/chat/?token={tokens[i]}", base, Result("warm-up"), start, timeout), args.warm)
        if "sse" in args.doors:
            with profiled(args, daphne, f"sse-n{n}"):
                sse = await measure_sse(
                    "ChatLima SSE", base + "/api/v1/chat/stream", lambda i: {"Authorization": f"Bearer {tokens[i]}"},
                    body, lambda e: e.get("type") == "stream_chunk", n, timeout)
            results.append(sse)
        if "ws" in args.doors:
            ws = Result("ChatLima WebSocket")
            origin = base
            with profiled(args, daphne, f"ws-n{n}"):
                await run_clients(lambda i, start: ws_client(
                    f"ws://127.0.0.1:{port}/ws/chat/?token={tokens[i]}", origin, ws, start, timeout), n)
            results.append(ws)
        peak = max((peak_rss_mb(pid) or 0 for pid in children(server.pid)), default=None)
        for r in results:
            r.peak_mb = peak
        return results
    finally:
        stop_processes(server, worker)


@contextlib.contextmanager
def profiled(args, pid: int, name: str):
    """py-spy on the daphne process for the phase (with --py-spy), its top lines printed after."""
    if not args.py_spy:
        yield
        return
    path = Path(args.profile_dir) / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = Profile(args.py_spy, pid, path)
    try:
        yield
    finally:
        profile.stop()
        print(f"\n== profile of daphne during {name} ==\n{top(path)}", flush=True)


# ---- report ----------------------------------------------------------------------------------

def report(n: int, pace: str, upstream: Result, results: list[Result]) -> None:
    base_first, base_dur = upstream.p(upstream.first, 50), upstream.p(upstream.duration, 50)
    print(f"\nN = {n} clients starting together; upstream: {pace}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'':22} {'first chunk p50/p99':>22} {'duration p50/p99':>20} {'errors':>7} "
          f"{'overhead first/dur (p50)':>26} {'peak MB':>8}")
    rows = [upstream, *results]
    for r in rows:
        over = "" if r is upstream else f"{r.p(r.first, 50) - base_first:8.0f} / {r.p(r.duration, 50) - base_dur:6.0f} ms"
        peak = f"{r.peak_mb:.0f}" if r.peak_mb else "-"
        print(f"{r.name:22} {r.p(r.first, 50):9.0f} / {r.p(r.first, 99):6.0f} ms {r.p(r.duration, 50) / 1000:8.2f} / "
              f"{r.p(r.duration, 99) / 1000:5.2f} s {len(r.errors):>7} {over:>26} {peak:>8}")
        for error in sorted(set(r.errors))[:3]:
            print(f"{'':24}error: {error}")
    peer = next((r for r in results if r.name == "Open WebUI"), None)
    if peer and peer.first:
        peer_first = peer.p(peer.first, 50) - base_first
        peer_dur = peer.p(peer.duration, 50) - base_dur
        for r in results:
            if r is peer or not r.first:
                continue
            first = (r.p(r.first, 50) - base_first) / peer_first if peer_first > 0 else float("nan")
            dur = (r.p(r.duration, 50) - base_dur) / peer_dur if peer_dur > 0 else float("nan")
            print(f"{r.name} overhead / Open WebUI's: first chunk {first:.2f}, duration {dur:.2f} (target <= 0.5)")



async def main_async(args) -> int:
    pace = f"{args.chunks} chunks {args.delay_ms:g} ms apart"
    upstream, up_port = spawn_upstream(args.chunks, args.delay_ms)
    upstream_url = f"http://127.0.0.1:{up_port}/v1"
    try:
        for n in args.clients:
            timeout = max(120, args.chunks * args.delay_ms / 1000 * 20)
            body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
            alone = await measure_sse(
                "upstream alone", upstream_url + "/chat/completions", lambda i: {}, body,
                lambda e: bool((e.get("choices") or [{}])[0].get("delta", {}).get("content")), n, timeout)
            results = []
            if not args.skip_open_webui:
                results.append(await open_webui(args, upstream_url, n, timeout))
            results.extend(await chatlima(args, upstream_url, n, timeout))
            report(n, pace, alone, results)
    finally:
        stop_processes(upstream)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100], help="N clients starting together")
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=20)
    parser.add_argument("--database-url", default="postgres://root@127.0.0.1:5432/chatlima_peer")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="empty: no Redis, no Celery")
    parser.add_argument("--owui-venv", default=str(Path.home() / ".cache" / "chatlima-bench" / "open-webui"),
                        help="Open WebUI's own virtualenv (made if missing), outside the repo")
    parser.add_argument("--skip-open-webui", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="hide ChatLima's log")
    parser.add_argument("--warm", type=int, default=10,
                        help="clients sent (and not counted) through each server before it is measured; 0: a cold start")
    parser.add_argument("--doors", nargs="+", default=["sse", "ws"], choices=["sse", "ws"], help="ChatLima's doors to measure")
    parser.add_argument("--py-spy", default="", help="py-spy's path: profile daphne during each door's run")
    parser.add_argument("--profile-dir", default="/tmp/chatlima-bench-profiles")
    args = parser.parse_args()
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
