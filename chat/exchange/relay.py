"""The provider's stream, read in a task of its own so that each frame carries all that has arrived.

`Exchange.events` (chat/exchange/stream.py) sends a frame, then none for the batch interval. Before
this relay it read the provider itself, one delta at a time, and a provider sends each delta as its
own TCP segment: every live answer woke the server once per delta (about 200 us of CPU here,
`bench/delta_floor.py`), although the deltas only left in the next frame. Now:

  * `Relay` reads the stream in its own task (under the provider's silence limit, `QuietTimer`)
    and keeps what it read until `take` collects it. The exchange's task only wakes for frames; all
    the deltas one network read brings are parsed back to back before it runs, so they share a frame.
  * `take(not_before)` first waits out the interval since the last frame. Meanwhile the provider's
    connection is held (`chat.providers.transport.ReadPace`: its socket is not read, the kernel
    keeps what arrives), so the deltas of one interval come in one read. Only the OpenAI-compatible
    providers' connections can be held (their transport is ours); the others just read on, and
    `take` sleeps out the interval instead.
  * A held stream's exchange wakes once per frame: the hold's end says the interval is over, and
    the exchange runs when the read after it brings the frame's deltas (or at once, if some were
    read before). It used to sleep out the interval on a timer of its own too, wake at its end to
    find nothing yet (the socket had only just been resumed), and wait again.

The text a client sees is the same, at most one interval later, as when a frame waited for the next
delta after the interval. Timing: the first delta still goes out at once, and the stream's end
(`ended_at`) is when the reader saw it, not when the exchange took it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from chat.providers.transport import ReadPace, pace_reads


class QuietTimer:
    """The provider's silence limit with one timer per stream, not one `asyncio.timeout` per delta
    (a Timeout object and a timer-heap entry made and cancelled for every delta). The stream's loop
    runs inside it (`async with QuietTimer(loop) as quiet`, one `asyncio.timeout(None)`), and
    `await quiet.next(stream, limit)` waits for the provider's next item at most `limit` seconds:
    only that wait counts, never the time spent with an item. The one timer looks at the deadline
    when it fires and re-arms itself while items keep coming; an expired wait raises TimeoutError.
    (A held connection's pause, at most one frame interval, counts as waiting.)"""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.deadline = float("inf")
        self.handle: asyncio.TimerHandle | None = None
        self.timeout = asyncio.timeout(None)

    async def __aenter__(self) -> QuietTimer:
        await self.timeout.__aenter__()
        return self

    async def __aexit__(self, *exc) -> bool | None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        return await self.timeout.__aexit__(*exc)

    async def next(self, stream: AsyncIterator, limit: float) -> Any:
        """`stream`'s next item, within `limit` seconds; StopAsyncIteration at its end."""
        self.start(limit)
        try:
            return await anext(stream)
        finally:
            self.deadline = float("inf")

    def _check(self) -> None:
        self.handle = None
        if self.loop.time() >= self.deadline:
            self.timeout.reschedule(self.loop.time())  # expires now: cancels the waiting task
        elif self.deadline != float("inf"):
            self.handle = self.loop.call_at(self.deadline, self._check)

    def start(self, limit: float) -> None:
        self.deadline = self.loop.time() + limit
        if self.handle is not None and self.handle.when() > self.deadline:
            self.handle.cancel()
            self.handle = None
        if self.handle is None:
            self.handle = self.loop.call_at(self.deadline, self._check)


class Relay:
    """`stream`'s items, read by a task of its own; `take` hands over what has arrived.

    `first_wait` bounds the wait for the first item (it may include the provider's own retries),
    `gap` each later one. However the stream ends, `end` says how: `Relay.DONE`, or the exception
    that ended it, which `take` raises once every item before it has been taken. `close()` stops the
    reader (cancelled) and must run before the stream itself is closed; `drain()` then hands over
    what was read and never taken, which is part of the answer all the same."""

    DONE = object()

    def __init__(self, stream: AsyncIterator, first_wait: float, gap: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.items: list[Any] = []
        self.end: Any = None
        self.ended_at: float | None = None
        self.waiter: asyncio.Future | None = None
        self.early = False  # a take is waiting out a hold: what arrives meanwhile waits with it
        self.wakes = 0  # times a take resumed (a sleep's end or an arrival): the exchange's wake-ups
        self.pace = ReadPace()
        self.task = self.loop.create_task(self._read(stream, first_wait, gap))

    async def _read(self, stream: AsyncIterator, wait: float, gap: float) -> None:
        pace_reads(self.pace)  # this task's reads register their connection with the pace
        try:
            async with QuietTimer(self.loop) as quiet:
                while True:
                    try:
                        item = await quiet.next(stream, wait)
                    except StopAsyncIteration:
                        break
                    wait = gap
                    self.items.append(item)
                    self._wake()
            self.end = self.DONE
        except asyncio.CancelledError:
            self.end = asyncio.CancelledError()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the exchange, which tells and settles it
            self.end = exc
        finally:
            self.ended_at = time.perf_counter()
            self.pace.forget()
            self._wake()

    def _wake(self) -> None:
        if not self.early and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _due(self) -> None:
        """The hold is over (its time is up, or the stream ended): the waiting take may run."""
        self.early = False
        if self.items or self.end is not None:
            self._wake()

    async def take(self, not_before: float) -> list[Any]:
        """What has arrived, once the loop's clock reaches `not_before` and there is something (or the
        stream has ended: then [] once all is taken, or its exception raised)."""
        delay = not_before - self.loop.time()
        if delay > 0 and self.end is None:
            if self.pace.hold(delay, self._due):
                self.early = True
            else:
                await asyncio.sleep(delay)
                self.wakes += 1
        while (self.early or not self.items) and self.end is None:
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
                self.wakes += 1
        if self.items:
            items, self.items = self.items, []
            return items
        if isinstance(self.end, BaseException):
            raise self.end
        return []

    async def close(self) -> None:
        """Stop the reader (its stream's await is cancelled) and wait until it has."""
        self.pace.forget()
        if not self.task.done():
            self.task.cancel()
        await asyncio.wait({self.task})

    def drain(self) -> list[Any]:
        """What was read and not taken (after `close`: nothing more comes)."""
        items, self.items = self.items, []
        return items


class LoopLag:
    """How late this process's event loop runs what is due: a timer every `PERIOD` notes how late it
    fired (as long as every callback ready before it took), smoothed over about a second. It ticks
    only while asked: it stops once nobody has asked for a second, and `loop_lag` starts it again
from 0."""

    PERIOD = 0.1
    WEIGHT = 0.2  # of each new reading in the average

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lag = 0.0
        self.handle: asyncio.TimerHandle | None = None
        self.asked = self.due = 0.0

    def start(self) -> None:
        self.due = self.loop.time() + self.PERIOD
        self.handle = self.loop.call_at(self.due, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        self.lag += self.WEIGHT * (max(0.0, now - self.due) - self.lag)
        self.handle = None
        if now - self.asked <= 1.0:
            self.start()


_lag: LoopLag | None = None


def loop_lag() -> float:
    """The running loop's smoothed lateness in seconds (0 while it keeps up)."""
    global _lag
    loop = asyncio.get_running_loop()
    if _lag is None or _lag.loop is not loop:
        _lag = LoopLag(loop)
    if _lag.handle is None:  # nobody asked for a second: no frames were due, the loop was not busy
        _lag.lag = 0.0
        _lag.start()
    _lag.asked = loop.time()
    return _lag.lag
