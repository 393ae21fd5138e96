"""What one WebSocket frame costs daphne itself, below ChatLima: the floor under "CPU per frame".

    .venv/bin/python bench/frame_floor.py [--sockets 50] [--frames 400]

Starts daphne (one process, as production starts it: `python -m chatlima.worker`, on uvloop and
then on Python's own loop) on this file's own ASGI app and, on `--sockets` sockets at once, asks
each for `--frames` frames of a `stream_chunk`'s size; prints daphne's CPU per frame (from /proc)
two ways:

  * raw ASGI: the app awaits daphne's `send` for each frame (daphne, autobahn, twisted's write);
  * channels: an `AsyncJsonWebsocketConsumer` sends each with `send_json` (channels' JSON and
    send on top), as chat/consumers.py does;
  * channels, paced: the same with `--paced-ms` between one socket's frames, so each frame has its
    own wake-up (a timer, the task's step, its own write), as a streamed answer's frames did;
  * channels, paced on one grid: each socket's next frame is due at the next tick of one
    `--paced-ms` grid for the process, as an exchange's frames are (`chat.exchange.stream.next_frame_at`),
    so the sockets' wake-ups and writes share loop turns.

The first two send back to back, so several frames share a loop turn. ChatLima's `ws_load` CPU
split counts everything an answer's length adds, on top of the paced figure: the provider's reads
(or the offline model's pacing), the relay, token counts, the longer settle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHUNK = {"type": "stream_chunk", "request_id": "r" * 26, "chunk": "word word word ", "estimated_completion_tokens": 0}


def _django() -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure(DATABASES={}, INSTALLED_APPS=["channels"])
        import django

        django.setup()


async def _raw(scope, receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            for i in range(int(message["text"])):
                await send({"type": "websocket.send", "text": json.dumps({**CHUNK, "estimated_completion_tokens": i})})
        else:
            return


_consumer = None


async def application(scope, receive, send) -> None:
    """`/raw` is plain ASGI, anything else a channels consumer."""
    global _consumer
    if scope["path"] == "/raw":
        return await _raw(scope, receive, send)
    if _consumer is None:
        _django()
        from channels.generic.websocket import AsyncJsonWebsocketConsumer

        class Frames(AsyncJsonWebsocketConsumer):
            async def receive_json(self, content, **kwargs) -> None:
                frames, pause, grid = content
                loop = asyncio.get_running_loop()
                for i in range(frames):
                    if grid:
                        now = loop.time()
                        await asyncio.sleep(round((now + pause) / pause) * pause - now)
                    elif pause:
                        await asyncio.sleep(pause)
                    await self.send_json({**CHUNK, "estimated_completion_tokens": i})

        _consumer = Frames.as_asgi()
    return await _consumer(scope, receive, send)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(port: int, pid: int, path: str, sockets: int, frames: int, pause: float = 0.0,
                  grid: bool = False) -> float:
    import websockets

    connections = [await websockets.connect(f"ws://127.0.0.1:{port}{path}", max_queue=None) for _ in range(sockets)]

    async def one(ws) -> None:
        await ws.send(str(frames) if path == "/raw" else json.dumps([frames, pause, grid]))
        for _ in range(frames):
            await ws.recv()

    try:
        await asyncio.gather(*(one(ws) for ws in connections))  # warm
        before = cpu_seconds(pid)
        await asyncio.gather(*(one(ws) for ws in connections))
        return (cpu_seconds(pid) - before) / (sockets * frames)
    finally:
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


def floor(loop: str, args: argparse.Namespace) -> None:
    """Daphne started as production starts each worker (`python -m chatlima.worker`) on `loop`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "chatlima.worker", "-b", "127.0.0.1", "-p", str(port), "--verbosity", "0",
               "frame_floor:application"]
    server = subprocess.Popen(command, cwd=HERE, env={**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parent}",
                                                      "CHATLIMA_EVENT_LOOP": loop},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("daphne did not start")
            time.sleep(0.1)
        pace = args.paced_ms / 1000
        runs = (("raw ASGI send", "/raw", 0.0, False), ("channels send_json", "/channels", 0.0, False),
                (f"channels, {args.paced_ms:g} ms apart", "/channels", pace, False),
                (f"channels, on a {args.paced_ms:g} ms grid", "/channels", pace, True))
        for label, path, pause, grid in runs:
            per_frame = asyncio.run(measure(port, server.pid, path, args.sockets, args.frames, pause, grid))
            print(f"  {loop + ':':9s} {label:26s} {per_frame * 1e6:6.1f} us of daphne's CPU per frame")
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=50)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--paced-ms", type=float, default=20.0, help="the paced run's time between frames")
    parser.add_argument("--loops", nargs="+", choices=("uvloop", "asyncio"), default=["uvloop", "asyncio"],
                        help="the event loops to measure daphne on (production's is uvloop)")
    args = parser.parse_args()
    print(f"{args.sockets} sockets x {args.frames} frames each, one daphne process:")
    for loop in args.loops:
        floor(loop, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
