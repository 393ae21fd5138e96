"""Streaming: the one async part of an exchange, from `start_exchange` to its settle.

`start_exchange` parses and prepares (chat.exchange.prepare) on a database thread; the `Exchange`
it returns streams the provider's answer as events and, whatever ends the stream (success,
provider error, cancel, disconnect, CancelledError), settles it exactly once
(chat.exchange.settle). Database work runs in short sync functions through `run_db`, never while
holding a row lock across an await.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings

from accounts.models import User
from chat import partials, providers
from chat.exchange import events
from chat.exchange.body import SendBody, parse_send_body
from chat.exchange.prepare import Prepared, prepare_exchange
from chat.exchange.relay import Relay, loop_lag
from chat.exchange.replay import Replay
from chat.exchange.settle import Outcome, charged_usage, settle_exchange
from chat.exchange.supplied import Supplied, Via
from chat.providers.base import ProviderError, Reasoning, Usage
from chatlima.db import ServiceUnavailable, run_db
from usage.models import ApiUsageLog
from usage.tokens import count_tokens

logger = logging.getLogger(__name__)

S = ApiUsageLog.Status
STATUS_FOR_CODE = {"RATE_LIMITED": S.RATE_LIMITED, "TIMEOUT": S.TIMEOUT, "PROVIDER_ERROR": S.ERROR}
SETTLE_ATTEMPTS = 3  # waits for a pooled connection before leaving the settle to the periodic one


def _settle_and_describe(user: User, prepared: Prepared, outcome: Outcome) -> list[dict]:
    """Settle (one transaction, chat.exchange.settle) and say how the stream ends."""
    done = settle_exchange(prepared.target, outcome)
    if done is None:
        return [events.already_settled(prepared.target.request_id)]
    return events.settled(prepared.target.request_id, user, done, outcome)


def _sorted(items: list, usage: Usage | None) -> tuple[list[str], list[str], Usage | None]:
    """A relay's items as answer text, reasoning text and the usage (the latest one; else `usage`)."""
    texts: list[str] = []
    reasoning: list[str] = []
    for item in items:
        if isinstance(item, Usage):
            usage = item
        elif isinstance(item, Reasoning):
            if item.text:
                reasoning.append(item.text)
        elif item:
            texts.append(item)
    return texts, reasoning, usage


MAX_INTERVAL_FACTOR = 8
_live_streams = 0  # streams this process is relaying now (a load figure of this process only)


def _busy_factor(interval: float) -> float:
    """How many batch intervals one frame spans (at most MAX_INTERVAL_FACTOR): 1 while the process
    keeps up, and more when its event loop runs late (`relay.loop_lag`: 1 + the lag over the
    interval) or it relays more than CHATLIMA_STREAM_BUSY_STREAMS live streams (their number over
    that; 0 = never). Each frame costs the server about the same whatever its size (daphne,
    autobahn, JSON, and with the relay the provider's reads), so a busy process sends fewer, longer
    frames: the client sees the same text, and the whole answer sooner than from a process falling
    behind."""
    factor = 1.0 + loop_lag() / interval if interval > 0 else 1.0
    per = settings.CHATLIMA_STREAM_BUSY_STREAMS
    if per > 0 and _live_streams > per:
        factor = max(factor, _live_streams / per)
    return min(MAX_INTERVAL_FACTOR, factor)


def next_frame_at(now: float, interval: float, factor: float = 1.0) -> float:
    """When a stream that sent a frame at `now` may send its next: `interval * factor` later, moved
    to the nearest tick of one grid of `interval`s on the loop's clock, the same for every stream of
    the process. So the live streams' frames fall due together: their holds end in one timer pass,
    their reads come back in one poll and their frames go out in one pass of the loop, instead of
    each stream waking the process on a phase of its own (daphne costs about 60 us of CPU for a
    frame sent alone, under 10 us for one sent beside others: bench/frame_floor.py). A stream's
    frames stay one interval apart on average; only the second can come up to half an interval
    early or late. `interval` 0 (a frame per delta) sends at once."""
    if interval <= 0:
        return now
    return round((now + interval * factor) / interval) * interval


def _streams(change: int) -> None:
    global _live_streams
    _live_streams += change


class Exchange:
    """A started exchange; `events()` streams it and settles it exactly once."""

    def __init__(self, user: User, prepared: Prepared) -> None:
        self.user = user
        self.prepared = prepared
        self.settled = False

    @property
    def request_id(self) -> str:
        return self.prepared.target.request_id

    async def events(self) -> AsyncIterator[dict]:
        """API.md's events in order; however the stream ends, `_finish` settles it (one transaction
        on a database thread, never holding a lock across an await)."""
        p, target = self.prepared, self.prepared.target
        loop = asyncio.get_running_loop()
        interval = settings.CHATLIMA_STREAM_BATCH_MS / 1000
        live = partials.LiveAnswer(assistant_pk=target.assistant_pk, reservation_id=target.reservation_id)
        parts = live.parts
        thoughts: list[str] = []
        running = 0
        usage: Usage | None = None
        status = S.SUCCESS
        error_code = error_message = ""
        retries = 0
        started = first_token = None
        stream = relay = None
        counted = False
        try:
            yield p.saved_event
            yield p.start_event
            provider = providers.get_provider(target.provider)
            started = time.perf_counter()
            partials.saver().add(live)
            _streams(+1)
            counted = True
            stream = provider.stream(p.chat_request)
            # A provider that goes quiet must not hold the exchange (and its hold) forever; the first
            # item may include the provider's own retries.
            gap = settings.PROVIDER_TIMEOUT_SECONDS
            relay = Relay(stream, gap * (settings.PROVIDER_MAX_RETRIES + 1), gap)
            # The first delta goes out at once (time to first token); then one frame at most per
            # interval, with all that arrived meanwhile (chat/exchange/relay.py), in longer frames
            # while the process is busy (_busy_factor), on the process's one frame grid (next_frame_at).
            not_before = float("-inf")
            while items := await relay.take(not_before):
                texts, reasoning, usage = _sorted(items, usage)
                if (texts or reasoning) and first_token is None:
                    first_token = time.perf_counter()
                if reasoning:
                    thoughts.extend(reasoning)
                    live.estimated_tokens += count_tokens("".join(reasoning), target.model)
                if texts:
                    parts.extend(texts)
                    batch = "".join(texts)
                    tokens = count_tokens(batch, target.model)
                    running += tokens
                    live.estimated_tokens += tokens
                    not_before = next_frame_at(loop.time(), interval, _busy_factor(interval))
                    yield events.stream_chunk(target.request_id, batch, running)
        except TimeoutError:
            status = S.TIMEOUT
            error_code, error_message = "TIMEOUT", "The provider did not answer in time."
        except ProviderError as exc:
            status = STATUS_FOR_CODE.get(exc.code, S.ERROR)
            error_code = exc.code if exc.code in STATUS_FOR_CODE else "PROVIDER_ERROR"
            error_message = exc.message
            retries = exc.retries
            usage = exc.usage
        except (asyncio.CancelledError, GeneratorExit):
            status = S.CANCELLED
            error_code, error_message = "CANCELLED", "The exchange was cancelled."
            raise
        except Exception as exc:
            logger.exception("exchange %s failed", target.request_id)
            status = S.ERROR
            error_code, error_message = "PROVIDER_ERROR", f"The provider failed: {type(exc).__name__}."
        finally:
            partials.saver().remove(live)
            if counted:
                _streams(-1)
            # When the reader saw the stream end; now when it had not (a cancel: it stops in `_finish`).
            ended = relay.ended_at if relay is not None and relay.ended_at is not None else time.perf_counter()
            result = await _shielded(self._finish(
                relay, stream, parts, thoughts, usage, status, error_code, error_message, retries, started, first_token,
                ended,
            ))
        for event in result or []:
            yield event

    async def abandon(self) -> None:
        """Settle as cancelled an exchange whose stream never started (no provider call; the settle's
        one transaction, as `events()` ends)."""
        if not self.settled:
            await _shielded(self._finish(None, None, [], [], None, S.CANCELLED, "CANCELLED", "The exchange was cancelled.",
                                         0, None, None, None))

    async def _finish(self, relay, stream, parts, thoughts, usage, status, error_code, error_message, retries,
                      started, first_token, ended) -> list[dict]:
        if relay is not None:
            await relay.close()  # the reader stops before its stream is closed
            # What it read that no frame took (a cancel or a disconnect mid-interval) arrived all the
            # same: it is part of the partial answer and of what is charged.
            texts, reasoning, usage = _sorted(relay.drain(), usage)
            parts.extend(texts)
            thoughts.extend(reasoning)
        if stream is not None:
            try:
                # Closing the provider's generator closes its HTTP stream.
                await stream.aclose()
            except Exception:  # a failing close must not stop the settle
                logger.warning("closing the provider stream of %s failed", self.request_id, exc_info=True)
        text = "".join(parts)
        if usage is None:
            usage = charged_usage(self.prepared.chat_request, text, "".join(thoughts))
        retries = max(retries, getattr(usage, "retries", 0) or 0)
        outcome = Outcome(
            status=status, text=text, usage=usage,
            response_time_ms=None if started is None else int((ended - started) * 1000),
            time_to_first_token_ms=None if started is None or first_token is None else int((first_token - started) * 1000),
            error_code=error_code, error_message=error_message, retries=retries,
        )
        for attempt in range(SETTLE_ATTEMPTS):
            try:
                result = await run_db(_settle_and_describe, self.user, self.prepared, outcome)
            except ServiceUnavailable as err:
                # Each attempt waited the pool's timeout and changed nothing. After the last, the
                # exchange stays pending with its last saved partial; its heartbeat has stopped, so
                # the periodic settle (chat.tasks.settle_stale_exchanges) settles it as interrupted.
                logger.warning("settling %s: no database connection (attempt %d)", self.request_id, attempt + 1)
                if attempt + 1 == SETTLE_ATTEMPTS:
                    return [events.not_saved_yet(self.request_id, err.code, err.details)]
                continue
            self.settled = True
            return result
        return []


async def _finish_despite_cancel(task: asyncio.Future) -> Any:
    """Wait for `task` to the end however many times the caller is cancelled meanwhile, then pass
    one cancellation on: settling must not be lost to a second cancel or a disconnect."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()


async def _shielded(coro) -> Any:
    """Await `coro` to the end even if the caller is cancelled meanwhile (settling must not be lost)."""
    return await _finish_despite_cancel(asyncio.ensure_future(coro))


async def start_exchange(user: User, body: Any, supplied: Supplied | None = None,
                         via: Via | None = None) -> Exchange | Replay:
    """Parse, check and prepare; raises ClientError for anything refused before the stream.

    `supplied`: the OpenAI door's client-supplied history; `via`: the door and API token
    (chat/exchange/supplied.py). The preparing runs in one database hop (`prepared_exchange`).
    """
    req = body if isinstance(body, SendBody) else parse_send_body(body)
    return await prepared_exchange(lambda: (user, prepare_exchange(user, req, supplied, via)))


async def prepared_exchange(prepare: Callable[[], tuple[User, Prepared | Replay]]) -> Exchange | Replay:
    """Run `prepare` on a database thread (`run_db`, one hop) and start what it prepared for the user
    it names. A door whose credentials are checked per request (SSE, /send) checks them inside
    `prepare`: one hop instead of two, each queued behind every other request's in a burst.

    Cancel-safe: if the caller is cancelled while the preparing transaction runs, the prepared
    exchange is settled as `cancelled` at once rather than left pending.
    """
    task = asyncio.ensure_future(run_db(prepare))
    try:
        user, prepared = await _finish_despite_cancel(task)
    except asyncio.CancelledError:
        # However many cancels came while preparing: settle what was prepared, exactly once.
        if not task.cancelled() and task.exception() is None and isinstance(task.result()[1], Prepared):
            await Exchange(*task.result()).abandon()
        raise
    if isinstance(prepared, Replay):
        return prepared
    return Exchange(user, prepared)
