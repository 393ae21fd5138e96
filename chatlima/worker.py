"""One daphne process on uvloop: `python -m chatlima.worker [daphne's arguments]`.

`chatlima.serve` starts its workers with this instead of the `daphne` command. Daphne runs Twisted
on an asyncio loop it makes when `daphne.server` is imported (`asyncio.new_event_loop()`, then
Twisted's `asyncioreactor.install`), so the loop is whatever the policy makes at that moment: here
uvloop's (libuv, in C), set before daphne is imported. Every wake-up of a streaming process goes
through that loop: each provider read, each frame's write, each timer; the code on it is the same.

Measured side by side (bench/ws_load.py, Poisson 100 exchanges a second for 30 s, 100 chunks 20 ms
apart, 2 processes; two interleaved pairs): overhead to the first chunk p50 152 / 184 -> 65 / 90 ms,
p99 496 / 672 -> 273 / 441 ms, with more and smaller frames (the loop runs late less often, so
frames grow less: 28 / 27 -> 39 / 37 per exchange) for less CPU (12.3 -> 11.7 ms per exchange).

`CHATLIMA_EVENT_LOOP=asyncio` keeps Python's own loop (uvloop is also skipped where it is not
installed, as on Windows, where it does not exist).
"""

from __future__ import annotations

import asyncio
import os
import sys


def use_uvloop() -> bool:
    """Make the policy's loops uvloop's, unless switched off or absent; whether it did."""
    if os.environ.get("CHATLIMA_EVENT_LOOP", "uvloop") == "asyncio":
        return False
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main() -> int | None:
    if "daphne.server" in sys.modules:  # its loop exists already: too late to choose another
        raise RuntimeError("chatlima.worker must choose the event loop before daphne is imported")
    use_uvloop()
    from daphne.cli import CommandLineInterface

    return CommandLineInterface.entrypoint()


if __name__ == "__main__":
    sys.exit(main())
