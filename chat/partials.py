"""Answers saved while they stream, and the heartbeat that tells a live exchange from a dead one.

A server process keeps one `PartialSaver` per event loop. Every exchange that starts streaming
registers its `LiveAnswer`; every `CHATLIMA_PARTIAL_SAVE_SECONDS` (1 s) the saver writes, in ONE
transaction for all of them, the text that arrived since the last save and the running estimate of
the output tokens (answer and reasoning) into the streaming assistant messages, and stamps every live
message's `heartbeat_at`. So a `kill -9` loses at most about one interval of text, the cost is one
short transaction per process per interval whatever the number of streams, and an exchange whose
heartbeat stopped belongs to a server that is gone (`chat.exchange.settle_interrupted_exchanges`).

Writes only touch rows still `streaming`: an exchange that has settled meanwhile is left as settled.
The holds' expiry is pushed forward every quarter of the reservation TTL, in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from chat.models import Message
from chatlima.db import ServiceUnavailable, run_db
from usage import budgets

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class LiveAnswer:
    """One streaming answer: the pipeline appends to `parts`; the saver reads them."""

    assistant_pk: int
    reservation_id: int | None
    parts: list[str] = field(default_factory=list)
    estimated_tokens: int = 0  # running estimate of the output so far (answer + reasoning)
    saved_parts: int = -1  # how many parts the last save held; -1: never saved


def write_partials(changed: list[tuple[int, str, int]], alive: list[int], reservations: list[int]) -> None:
    """Save changed answers (pk, text, estimated tokens), stamp the heartbeat of every live one and
    push the given holds' expiry forward.

    One transaction; plain UPDATEs guarded by `status = 'streaming'` (and `state = 'held'` for the
    holds), so nothing settled meanwhile is touched. Row locks are taken in primary-key order, as
    each statement updates, and held only for the few statements of this transaction.
    """
    now = timezone.now()
    table = connection.ops.quote_name(Message._meta.db_table)
    streaming = Message.Status.STREAMING
    with transaction.atomic():
        with connection.cursor() as cursor:
            if changed:
                cursor.executemany(
                    f"UPDATE {table} SET content = %s, completion_tokens = %s, heartbeat_at = %s "
                    f"WHERE id = %s AND status = %s",
                    [(text, tokens, now, pk, streaming) for pk, text, tokens in sorted(changed)],
                )
            if alive:
                marks = ", ".join(["%s"] * len(alive))
                cursor.execute(
                    f"UPDATE {table} SET heartbeat_at = %s WHERE id IN ({marks}) AND status = %s",
                    [now, *sorted(alive), streaming],
                )
        if reservations:
            budgets.touch_reservations(reservations)


class PartialSaver:
    """The live answers of one event loop, saved together every interval while there are any."""

    def __init__(self) -> None:
        self.live: set[LiveAnswer] = set()
        self._task: asyncio.Task | None = None
        self._writing = False
        self._last_touch = 0.0

    def add(self, answer: LiveAnswer) -> None:
        interval = settings.CHATLIMA_PARTIAL_SAVE_SECONDS
        if not interval:
            return  # saving switched off (tests that count statements)
        self.live.add(answer)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run(interval))

    def remove(self, answer: LiveAnswer) -> None:
        self.live.discard(answer)
        if not self.live and self._task is not None and not self._writing:
            self._task.cancel()  # nothing left to save: stop sleeping (a loop may be closing)
            self._task = None

    async def _run(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        self._last_touch = loop.time()
        touch_every = settings.CHATLIMA_RESERVATION_TTL_SECONDS / 4
        while self.live:
            await asyncio.sleep(interval)
            changed, alive = [], []
            for answer in list(self.live):
                count = len(answer.parts)
                if count != answer.saved_parts:
                    changed.append((answer.assistant_pk, "".join(answer.parts[:count]), answer.estimated_tokens))
                    answer.saved_parts = count
                else:
                    alive.append(answer.assistant_pk)
            reservations: list[int] = []
            if loop.time() - self._last_touch >= touch_every:
                self._last_touch = loop.time()
                reservations = [a.reservation_id for a in self.live if a.reservation_id]
            if not changed and not alive:
                continue
            self._writing = True
            try:
                await run_db(write_partials, changed, alive, reservations)
            except Exception as exc:  # a failed save is retried at the next interval
                busy = isinstance(exc, ServiceUnavailable)  # no pooled connection came free: nothing to trace
                logger.warning("saving %d partial answers failed", len(changed) + len(alive), exc_info=not busy)
                for answer in self.live:
                    answer.saved_parts = -1
            finally:
                self._writing = False


_savers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PartialSaver] = weakref.WeakKeyDictionary()


def saver() -> PartialSaver:
    """This event loop's saver."""
    loop = asyncio.get_running_loop()
    found = _savers.get(loop)
    if found is None:
        found = _savers[loop] = PartialSaver()
    return found
