"""chat/exchange/relay.py: the provider's stream read in a task of its own, its connection held
between frames.

Through the real openai SDK and the OpenAI adapter against the fake (tests/fakes), 30 deltas 10 ms
apart taken once per 100 ms:
  * every delta arrives, in order, in about one batch per interval;
  * the held connection brings an interval's deltas in one read (a handful of socket waits), where
    an exchange that never waits between frames wakes for about every delta;
  * the exchange wakes once per frame while its connection is held (no timer of its own);
  * a connection is never left held once its stream ends, however it ends;
then, with scripted streams: items before an error are taken before the error is raised; a quiet
provider is a TimeoutError; close() while held stops the reader and leaves nothing running.
"""

from __future__ import annotations

import asyncio

import pytest

from chat.exchange.relay import Relay
from chat.providers import get_provider
from chat.providers.base import ChatRequest, ProviderError, Usage

pytestmark = pytest.mark.asyncio

DELTAS = [f"w{i} " for i in range(30)]


async def relay_all(relay: Relay, interval: float) -> list[list]:
    """Everything the relay hands over, taken as Exchange.events takes it: once per `interval`."""
    loop = asyncio.get_running_loop()
    batches, not_before = [], float("-inf")
    while items := await relay.take(not_before):
        batches.append(items)
        not_before = loop.time() + interval
    return batches


def provider_stream(fake):
    fake.script(DELTAS)
    fake.slow_stream(0.01)
    return get_provider("openai").stream(ChatRequest(model="gpt-4o", message="hi"))


async def test_a_held_connection_brings_each_intervals_deltas_in_one_read(fake_openai):
    relay = Relay(provider_stream(fake_openai), 5, 5)
    batches = await relay_all(relay, 0.1)
    await relay.close()
    items = [item for batch in batches for item in batch]
    assert [i for i in items if isinstance(i, str)] == DELTAS
    assert isinstance(items[-1], Usage) and items[-1].completion_tokens == len(DELTAS)
    # 30 deltas over ~300 ms, one take per 100 ms: the first delta alone, then a few batches.
    assert 2 <= len(batches) <= 7, [len(b) for b in batches]
    assert relay.pace.waits <= 10, relay.pace.waits
    # One wake-up per frame (the last take's, at the stream's end, too); a sleep of the take's own
    # beside the hold made it two: one at the interval's end finding nothing yet, one on arrival.
    assert relay.wakes <= len(batches) + 1, (relay.wakes, len(batches))
    assert relay.pace.stream is None and relay.pace.handle is None  # released as the stream ended


async def test_without_waiting_between_frames_every_delta_is_its_own_wake_up(fake_openai):
    relay = Relay(provider_stream(fake_openai), 5, 5)
    batches = await relay_all(relay, 0)
    await relay.close()
    assert [i for b in batches for i in b if isinstance(i, str)] == DELTAS
    assert relay.pace.waits >= 25  # the contrast with the held connection above


async def test_closing_while_held_stops_the_reader_and_releases_the_connection(fake_openai):
    relay = Relay(provider_stream(fake_openai), 5, 5)
    loop = asyncio.get_running_loop()
    first = await relay.take(float("-inf"))
    assert first
    take = asyncio.ensure_future(relay.take(loop.time() + 0.2))
    await asyncio.sleep(0.05)
    stream = relay.pace.stream
    assert stream is not None and relay.pace.handle is not None  # held now
    assert not stream.transport.is_reading()
    take.cancel()
    await relay.close()
    assert relay.task.done() and relay.pace.handle is None and relay.pace.stream is None
    assert stream.transport.is_closing() or stream.transport.is_reading()


async def scripted(items: list, error: BaseException | None = None, stall: float = 0.0):
    for item in items:
        await asyncio.sleep(0.001)
        yield item
    if stall:
        await asyncio.sleep(stall)
    if error is not None:
        raise error


async def test_what_came_before_an_error_is_taken_before_the_error():
    relay = Relay(scripted(["a", "b"], ProviderError("PROVIDER_ERROR", "broke")), 5, 5)
    taken = []
    with pytest.raises(ProviderError, match="broke"):
        while items := await relay.take(float("-inf")):
            taken.extend(items)
    assert taken == ["a", "b"]
    await relay.close()


async def test_a_quiet_provider_times_out_through_the_relay():
    relay = Relay(scripted(["a"], stall=5), 0.05, 0.05)
    with pytest.raises(TimeoutError):
        while await relay.take(float("-inf")):
            pass
    await relay.close()


async def test_closing_mid_stream_cancels_the_reader():
    relay = Relay(scripted(["a"], stall=5), 10, 10)
    assert await relay.take(float("-inf")) == ["a"]
    await relay.close()
    assert relay.task.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await relay.take(float("-inf"))


async def test_what_was_read_and_never_taken_is_handed_over_after_close():
    relay = Relay(scripted(["a", "b", "c"], stall=5), 10, 10)
    assert await relay.take(float("-inf")) == ["a"]
    await asyncio.sleep(0.05)  # "b" and "c" arrive while no frame is due
    await relay.close()
    assert relay.drain() == ["b", "c"]
    assert relay.drain() == []


class HeldStream:
    """What a read on the adapter's connection registers with the pace (transport.AsyncioStream),
    for the scripted streams, which have no connection: its transport notes pauses and resumes."""

    class Transport:
        def __init__(self) -> None:
            self.paused = 0
            self.resumed = 0

        def pause_reading(self) -> None:
            self.paused += 1

        def resume_reading(self) -> None:
            self.resumed += 1

        def is_closing(self) -> bool:
            return False

    def __init__(self) -> None:
        self.transport = self.Transport()


async def test_what_arrives_during_a_hold_waits_for_its_end_in_one_wake_up():
    relay = Relay(scripted(["a", "b", "c"], stall=5), 5, 5)
    loop = asyncio.get_running_loop()
    assert await relay.take(float("-inf")) == ["a"]
    relay.pace.stream = held = HeldStream()
    wakes, started = relay.wakes, loop.time()
    assert await relay.take(started + 0.1) == ["b", "c"]  # both arrived within the first few ms
    assert loop.time() - started >= 0.095
    assert relay.wakes - wakes == 1  # the hold's end, not a timer of the take's own as well
    assert held.transport.paused == held.transport.resumed == 1
    await relay.close()


async def test_a_stream_that_ends_during_a_hold_ends_the_take_at_once():
    """The reader finds the end in what it had already read, during the hold: the connection is
    released as the stream ends, and the take hands over the rest without waiting the interval out."""
    relay = Relay(scripted(["a", "b"]), 5, 5)
    loop = asyncio.get_running_loop()
    assert await relay.take(float("-inf")) == ["a"]
    relay.pace.stream = HeldStream()
    started = loop.time()
    assert await relay.take(started + 5) == ["b"]
    assert loop.time() - started < 1
    assert await relay.take(loop.time() + 5) == []
    assert relay.pace.handle is None and relay.pace.stream is None
    await relay.close()


async def test_a_take_with_no_connection_to_hold_sleeps_out_its_interval():
    relay = Relay(scripted(["a", "b"], stall=5), 5, 5)
    loop = asyncio.get_running_loop()
    assert await relay.take(float("-inf")) == ["a"]
    started = loop.time()
    assert await relay.take(started + 0.05) == ["b"]
    assert loop.time() - started >= 0.045
    await relay.close()
