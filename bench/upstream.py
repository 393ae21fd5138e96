"""A local OpenAI-compatible upstream for the benches: the same answer for every request, at a fixed pace.

    .venv/bin/python bench/upstream.py --port 9100 --chunks 100 --delay-ms 20

`POST /v1/chat/completions` streams `--chunks` deltas (fewer when `max_tokens` or
`max_completion_tokens` asks for fewer: one token per chunk) `--delay-ms` apart in OpenAI's SSE format (the
usage chunk last when `stream_options.include_usage` is asked, `data: [DONE]` to end), or answers
the whole completion at once when `stream` is false (after the same total delay). `GET /v1/models`
lists one model, `bench-model`.

A streamed answer goes as OpenAI's API sends it: `Transfer-Encoding: chunked` on a connection kept
alive for the client's next request (unless it asks `Connection: close`), so a client that pools
its connections, as ChatLima and Open WebUI do, connects once, not once per answer. Plain asyncio
streams on uvloop, no framework, each stream's chunks built once: one process serves thousands of
concurrent streams with little CPU, and takes as little as it can of the cores it shares with what
a bench measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import uvloop  # production's loop (chatlima/worker.py), in requirements.txt

MODEL = "bench-model"
WORD = "word "


def _chunked(data: bytes) -> bytes:
    """`data` as one chunk of HTTP/1.1's chunked transfer encoding."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _chunk(completion_id: str, created: int, delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    """One SSE event of the stream, chunk-encoded."""
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL,
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return _chunked(b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n")


class Upstream:
    def __init__(self, chunks: int, delay_ms: float) -> None:
        self.chunks = chunks
        self.delay = delay_ms / 1000
        self.count = 0

    def usage(self, prompt_chars: int, chunks: int | None = None) -> dict:
        prompt, chunks = max(1, prompt_chars // 4), self.chunks if chunks is None else chunks
        return {"prompt_tokens": prompt, "completion_tokens": chunks, "total_tokens": prompt + chunks}

    def chunks_for(self, request: dict) -> int:
        """`--chunks`, or fewer when the request caps its answer (one token per chunk)."""
        cap = request.get("max_completion_tokens") or request.get("max_tokens")
        return max(1, min(self.chunks, int(cap))) if isinstance(cap, int) else self.chunks

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "GET" and path.rstrip("/").endswith("/models"):
                    await self._json(writer, {"object": "list", "data": [
                        {"id": MODEL, "object": "model", "created": 1700000000, "owned_by": "bench"}]})
                elif method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                    request = json.loads(body or b"{}")
                    if request.get("stream"):
                        await self._stream(writer, request, len(body))
                    else:
                        await self._complete(writer, len(body))
                else:
                    await self._json(writer, {"error": {"message": "not found"}}, status="404 Not Found")
                if headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            return
        finally:
            writer.close()

    @staticmethod
    async def _json(writer: asyncio.StreamWriter, body: dict, status: str = "200 OK") -> None:
        data = json.dumps(body).encode()
        writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        await writer.drain()

    async def _complete(self, writer: asyncio.StreamWriter, prompt_chars: int) -> None:
        await asyncio.sleep(self.delay * self.chunks)
        self.count += 1
        await self._json(writer, {
            "id": f"cmpl-{self.count}", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": WORD * self.chunks},
                         "finish_reason": "stop"}],
            "usage": self.usage(prompt_chars),
        })

    async def _stream(self, writer: asyncio.StreamWriter, request: dict, prompt_chars: int) -> None:
        self.count += 1
        completion_id, created = f"cmpl-{self.count}", int(time.time())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        writer.write(_chunk(completion_id, created, {"role": "assistant", "content": ""}))
        start = time.monotonic()
        chunks = self.chunks_for(request)
        word = _chunk(completion_id, created, {"content": WORD})
        for n in range(chunks):
            # Paced from the start, so the total stays chunks x delay however busy the loop is.
            wait = start + n * self.delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last = n == chunks - 1
            writer.write(_chunk(completion_id, created, {"content": WORD}, "stop") if last else word)
            await writer.drain()
        if (request.get("stream_options") or {}).get("include_usage"):
            writer.write(_chunk(completion_id, created, {}, usage=self.usage(prompt_chars, chunks)))
        writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


async def serve(port: int, chunks: int, delay_ms: float) -> None:
    upstream = Upstream(chunks, delay_ms)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=20)
    args = parser.parse_args()
    try:
        uvloop.run(serve(args.port, args.chunks, args.delay_ms))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
