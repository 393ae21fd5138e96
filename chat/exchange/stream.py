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
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from accounts.models import User
from chat import partials, providers
from chat.exchange import events
from chat.exchange.body import SendBody, parse_send_body
from chat.exchange.prepare import Prepared, prepare_exchange
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


MAX_INTERVAL_FACTOR = 8
_live_streams = 0  # streams this process is relaying now (a load figure of this process only)


def _busy_factor() -> float:
    """How many batch intervals one frame spans: 1 up to CHATLIMA_STREAM_BUSY_STREAMS live streams
    in this process, then growing with them (at most MAX_INTERVAL_FACTOR; 0 = never). Each frame
    costs the server about the same whatever its size (daphne, autobahn, JSON), so a busy process
    sends fewer, longer frames: the client sees the same text, and the whole answer sooner than from
    a process falling behind."""
    per = settings.CHATLIMA_STREAM_BUSY_STREAMS
    if per <= 0 or _live_streams <= per:
        return 1.0
    return min(MAX_INTERVAL_FACTOR, _live_streams / per)


def _streams(change: int) -> None:
    global _live_streams
    _live_streams += change


class _QuietTimer:
    """The provider's silence limit with one timer per stream, not one `asyncio.timeout` per delta
    (a Timeout object and a timer-heap entry made and cancelled for every delta). The stream's loop
    runs inside it (`async with _QuietTimer(loop) as quiet`, one `asyncio.timeout(None)`), and
    `await quiet.next(stream, limit)` waits for the provider's next item at most `limit` seconds:
    only that wait counts, never the time spent with an item (the caller's frames). The one timer
    looks at the deadline when it fires and re-arms itself while items keep coming; an expired wait
    raises TimeoutError, as before."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.deadline = float("inf")
        self.handle: asyncio.TimerHandle | None = None
        self.timeout = asyncio.timeout(None)

    async def __aenter__(self) -> _QuietTimer:
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
        pending: list[str] = []
        running = 0
        usage: Usage | None = None
        status = S.SUCCESS
        error_code = error_message = ""
        retries = 0
        started = first_token = ended = None
        stream = None
        counted = False
        try:
            yield p.saved_event
            yield p.start_event
            provider = providers.get_provider(target.provider)
            started = time.perf_counter()
            last_flush = loop.time()
            partials.saver().add(live)
            _streams(+1)
            counted = True
            stream = provider.stream(p.chat_request)
            # A provider that goes quiet must not hold the exchange (and its hold) forever; the first
            # item may include the provider's own retries.
            gap = settings.PROVIDER_TIMEOUT_SECONDS
            wait = gap * (settings.PROVIDER_MAX_RETRIES + 1)
            async with _QuietTimer(loop) as quiet:
                while True:
                    try:
                        item = await quiet.next(stream, wait)
                    except StopAsyncIteration:
                        break
                    wait = gap
                    if isinstance(item, Usage):
                        usage = item
                        continue
                    if isinstance(item, Reasoning):
                        if item.text:
                            first_token = first_token or time.perf_counter()
                            thoughts.append(item.text)
                            live.estimated_tokens += count_tokens(item.text, target.model)
                        continue
                    if not item:
                        continue
                    if first_token is None:
                        first_token = time.perf_counter()
                    parts.append(item)
                    pending.append(item)
                    now = loop.time()
                    # The first delta goes out at once (time to first token); later ones are batched, in
                    # longer frames while the process streams many answers (_busy_factor).
                    if len(parts) == 1 or now - last_flush >= interval * _busy_factor():
                        batch = "".join(pending)
                        pending.clear()
                        tokens = count_tokens(batch, target.model)
                        running += tokens
                        live.estimated_tokens += tokens
                        last_flush = now
                        yield events.stream_chunk(target.request_id, batch, running)
            ended = time.perf_counter()
            if pending:
                batch = "".join(pending)
                pending.clear()
                running += count_tokens(batch, target.model)
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
            ended = ended or time.perf_counter()
            result = await _shielded(self._finish(
                stream, parts, thoughts, usage, status, error_code, error_message, retries, started, first_token,
                ended,
            ))
        for event in result or []:
            yield event

    async def abandon(self) -> None:
        """Settle as cancelled an exchange whose stream never started (no provider call; the settle's
        one transaction, as `events()` ends)."""
        if not self.settled:
            await _shielded(self._finish(None, [], [], None, S.CANCELLED, "CANCELLED", "The exchange was cancelled.",
                                         0, None, None, None))

    async def _finish(self, stream, parts, thoughts, usage, status, error_code, error_message, retries,
                      started, first_token, ended) -> list[dict]:
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

    Cancel-safe: if the caller is cancelled while the preparing transaction runs, the prepared
    exchange is settled as `cancelled` at once rather than left pending. `supplied`: the OpenAI
    door's client-supplied history; `via`: the door and API token (chat/exchange/supplied.py).
    """
    req = body if isinstance(body, SendBody) else parse_send_body(body)
    task = asyncio.ensure_future(run_db(prepare_exchange, user, req, supplied, via))
    try:
        prepared = await _finish_despite_cancel(task)
    except asyncio.CancelledError:
        # However many cancels came while preparing: settle what was prepared, exactly once.
        if not task.cancelled() and task.exception() is None and isinstance(task.result(), Prepared):
            await Exchange(user, task.result()).abandon()
        raise
    if isinstance(prepared, Replay):
        return prepared
    return Exchange(user, prepared)
