"""What one streamed delta costs the reading process, from the socket up to ChatLima's parser.

    .venv/bin/python bench/delta_floor.py [--chunks 300] [--delay-ms 3]

Starts bench/upstream.py streaming `--chunks` deltas `--delay-ms` apart (each delta its own TCP
segment and HTTP chunk, as providers send them) and reads one stream at a time four ways, printing
the client's CPU per delta (best of five streams):

  * raw asyncio: `StreamReader.read` on a plain socket, counting events (the machine's floor: one
    wake-up and one read per delta);
  * httpx `aiter_raw`: the same through httpx/httpcore/h11 (what the openai SDK reads with);
  * the SDK's `post`, `aiter_lines`, chat/providers/openai_compat.py's `sse_data` and `json.loads`,
    first on the SDK's own httpx client (httpcore's anyio backend), then on the adapter's
    (chat/providers/transport.py, plain asyncio): ChatLima's path;
  * ChatLima's path with the deltas back to back (`--delay-ms 0` for that run): the parsing alone,
    since the upstream's writes then share reads.

The difference between the first and the last is what waking up once per delta costs here. Tried
with the openai SDK's aiohttp transport (`openai[aiohttp]`): 297 against 462 us per delta here, but
no change in a server's CPU under `bench/ws_load.py --clients 500` (18.4 against 18.2 s), so not kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ws_load import spawn_upstream  # noqa: E402

BODY = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


async def raw_asyncio(port: int) -> tuple[float, int]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(BODY) + BODY)
    started, events = time.process_time(), 0
    while True:
        data = await reader.read(65536)
        if not data:
            break
        events += data.count(b"data: {")
        if b"[DONE]" in data:
            break
    writer.close()
    return time.process_time() - started, events


async def httpx_raw(port: int) -> tuple[float, int]:
    import httpx

    async with httpx.AsyncClient() as client, client.stream(
            "POST", f"http://127.0.0.1:{port}/v1/chat/completions", content=BODY) as response:
        started, events = time.process_time(), 0
        async for chunk in response.aiter_raw():
            events += chunk.count(b"data: {")
        return time.process_time() - started, events


async def chatlima_path(port: int, anyio: bool = False) -> tuple[float, int]:
    import django
    import httpx
    import openai

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")
    django.setup()
    from chat.providers.openai_compat import openai_client, sse_data

    if anyio:  # the SDK's own httpx client: httpcore's anyio backend
        client = openai.AsyncOpenAI(api_key="bench", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    else:  # the adapter's client (chat/providers/transport.py: plain asyncio)
        client = openai_client("bench", f"http://127.0.0.1:{port}/v1", 60)
    response = await client.post("/chat/completions", body=json.loads(BODY), cast_to=httpx.Response, stream=True)
    started, events = time.process_time(), 0
    try:
        async for data in sse_data(response.aiter_lines()):
            json.loads(data)
            events += 1
    finally:
        await response.aclose()
        if anyio:
            await client.close()
    return time.process_time() - started, events


def best_of(reader, port: int, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        cpu, events = asyncio.run(reader(port))
        best = min(best, cpu / max(events, 1))
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--delay-ms", type=float, default=3.0)
    args = parser.parse_args()
    rows = []
    upstream, port = spawn_upstream(args.chunks, args.delay_ms)
    try:
        for name, reader in (("raw asyncio read", raw_asyncio), ("httpx aiter_raw (anyio)", httpx_raw),
                             ("SDK post, lines, sse_data, json on the SDK's own client (anyio)",
                              lambda port: chatlima_path(port, anyio=True)),
                             ("ChatLima's path: the same on the adapter's client (asyncio)", chatlima_path)):
            rows.append((f"{name}, {args.delay_ms:g} ms apart", best_of(reader, port)))
    finally:
        upstream.terminate()
    upstream, port = spawn_upstream(args.chunks, 0)
    try:
        rows.append(("ChatLima's path, back to back (parsing alone)", best_of(chatlima_path, port)))
    finally:
        upstream.terminate()
    print(f"client CPU per streamed delta ({args.chunks} deltas a stream, best of 5):")
    for name, us in rows:
        print(f"  {us:8.1f} us  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
