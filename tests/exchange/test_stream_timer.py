"""The provider's silence limit (chat.exchange.relay.QuietTimer): one timer per stream, not one per delta;
how long frames wait (chat.exchange.stream: longer when busy, on one grid for the process)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from chat.exchange.relay import QuietTimer


async def relay(gaps: list[float], limit: float, hold: float = 0.0, first: float | None = None) -> list[int]:
    """Items `gaps` seconds apart through the timer as Exchange.events uses it; `hold` is the time the
    caller keeps each item (its frames) before asking for the next."""

    async def provider():
        for i, gap in enumerate(gaps):
            await asyncio.sleep(gap)
            yield i

    stream, seen = provider(), []
    async with QuietTimer(asyncio.get_running_loop()) as quiet:
        while True:
            try:
                item = await quiet.next(stream, first if first is not None and not seen else limit)
            except StopAsyncIteration:
                break
            seen.append(item)
            await asyncio.sleep(hold)
    return seen


async def test_items_that_keep_coming_never_time_out():
    # 20 items 10 ms apart (200 ms in all) under a 50 ms limit: the one timer re-arms itself.
    assert await relay([0.01] * 20, limit=0.05) == list(range(20))


async def test_a_provider_quiet_mid_stream_times_out_near_the_limit():
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await relay([0.005, 0.005, 1.0], limit=0.05)
    assert time.monotonic() - started < 0.5


async def test_the_callers_time_with_an_item_does_not_count():
    # Each item is kept 80 ms by the caller, longer than the 40 ms limit; the provider itself is prompt.
    assert await relay([0.001] * 4, limit=0.04, hold=0.08) == list(range(4))


async def test_a_long_first_wait_then_a_short_limit():
    # The first wait may be long (the provider's retries); after it the shorter limit applies at once,
    # although the timer was armed for the long one.
    assert await relay([0.2, 0.01], limit=0.05, first=1.0) == [0, 1]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await relay([0.2, 0.01, 5.0], limit=0.05, first=1.0)
    assert time.monotonic() - started < 0.8


async def test_frames_grow_when_a_process_streams_many_answers(monkeypatch, settings):
    from chat.exchange import stream

    settings.CHATLIMA_STREAM_BUSY_STREAMS = 200
    factors = []
    for live in (0, 200, 400, 20000):
        monkeypatch.setattr(stream, "_live_streams", live)
        factors.append(round(stream._busy_factor(0.05), 1))
    assert factors == [1.0, 1.0, 2.0, stream.MAX_INTERVAL_FACTOR]
    settings.CHATLIMA_STREAM_BUSY_STREAMS = 0
    assert round(stream._busy_factor(0.05), 1) == 1.0


async def test_frames_grow_when_the_event_loop_runs_late():
    from chat.exchange import relay, stream

    assert stream._busy_factor(0.05) < 1.2  # a loop that keeps up
    loop = asyncio.get_running_loop()
    stop = loop.time() + 1.5

    def hog() -> None:  # a callback holding the loop 60 ms, again and again: a busy process
        time.sleep(0.06)
        if loop.time() < stop:
            loop.call_soon(hog)

    loop.call_soon(hog)
    factors = []
    while loop.time() < stop:
        factors.append(stream._busy_factor(0.05))
        await asyncio.sleep(0.05)
    assert relay.loop_lag() > 0.02
    # Late by tens of milliseconds: frames span about twice the interval, more the longer it lasts.
    assert factors[-1] > 1.5
    assert factors[-1] > factors[0]
    assert max(factors) <= stream.MAX_INTERVAL_FACTOR
    await asyncio.sleep(1.3)  # caught up: the average falls back
    assert stream._busy_factor(0.05) < factors[-1]


def test_every_streams_frames_fall_on_one_grid():
    from chat.exchange.stream import next_frame_at

    interval = 0.05
    # Three streams whose first frames went at unrelated times, each then sending its next frame as
    # soon as it may (a loop running up to 10 ms late): from their second frame on they are all due
    # on the ticks of one grid, one interval apart, so while they overlap they are due together.
    schedules = []
    for start, late in ((100.003, 0.004), (100.021, 0.0), (100.047, 0.01)):
        times = [start]
        for _ in range(6):
            times.append(next_frame_at(times[-1], interval) + late)
        schedules.append([round(t - late, 6) for t in times[1:]])
    for due in schedules:
        assert all(abs(t / interval - round(t / interval)) < 1e-6 for t in due), due
        assert all(round(b - a, 6) == interval for a, b in itertools.pairwise(due)), due
    assert len(set(schedules[0]) & set(schedules[1]) & set(schedules[2])) == 5  # due together while they overlap
    # Never sooner than half an interval after a frame; a busy process's longer frames keep the grid.
    assert next_frame_at(100.0, interval) - 100.0 >= interval / 2
    assert next_frame_at(100.0, interval, 3.0) == pytest.approx(100.15)
    assert next_frame_at(100.01, 0.0) == 100.01  # no batching: at once
