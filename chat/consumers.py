"""The WebSocket door: `/ws/chat/`, one task per exchange so a socket can cancel and multiplex."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import aclosing
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.tokens import token_by_digest
from accounts.ws_auth import BUSY_SCOPE_KEY, CREDENTIAL_SCOPE_KEY, watch
from chat.exchange import Replay, parse_send_body, start_exchange
from chat.exchange.supplied import Via
from chatlima.db import ServiceUnavailable, run_db
from chatlima.errors import ClientError
from chatlima.middleware import MAX_JSON_DEPTH, json_too_deep
from chatlima.text import unstorable_character

logger = logging.getLogger(__name__)

UNAUTHENTICATED_CLOSE = 4401
# How long a stopping server waits for its exchanges in flight to settle.
SHUTDOWN_SETTLE_SECONDS = 15

# This process's own exchange tasks in flight (not shared state: each process waits for its own).
_live_exchanges: set[asyncio.Task] = set()


def _settles_in_flight():
    """daphne's "before shutdown" trigger: a Deferred the reactor waits for, done once every exchange
    task of this process has settled (or SHUTDOWN_SETTLE_SECONDS passed). Without it, a socket that
    closed just as the server was stopping could leave its exchange `pending` (the loop stopped
    before the disconnect's settle ran; the restart would settle it `interrupted`)."""
    from twisted.internet import defer

    tasks = [task for task in _live_exchanges if not task.done()]
    if not tasks:
        return None
    return defer.Deferred.fromFuture(asyncio.ensure_future(asyncio.wait(tasks, timeout=SHUTDOWN_SETTLE_SECONDS)))


def _wait_for_settles_at_shutdown() -> None:
    """Register `_settles_in_flight` with the reactor daphne runs; nothing where none is installed
    (tests, Celery): importing twisted's reactor would install one."""
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor

    reactor.addSystemEventTrigger("before", "shutdown", _settles_in_flight)


_wait_for_settles_at_shutdown()
TRY_AGAIN_LATER_CLOSE = 1013  # RFC 6455's "Try Again Later": the database had no free connection


class BadFrame(ValueError):
    """A text frame that is not a JSON document the socket accepts; its message says why."""


def _refuse_constant(name: str) -> None:
    raise BadFrame("Frames must be JSON (NaN and Infinity are not).")


def decode_frame(text: str) -> Any:
    """The frame's JSON, or BadFrame: not JSON, nested deeper than 64 levels (found before parsing,
    so no parser recurses into it), or text (keys included) holding a NUL character or a lone
    surrogate, which no column can store."""
    if json_too_deep(text.encode("utf-8", "surrogatepass")):
        raise BadFrame(f"Frames may nest at most {MAX_JSON_DEPTH} levels.")
    try:
        content = json.loads(text, parse_constant=_refuse_constant)
    except BadFrame:
        raise
    except ValueError:
        raise BadFrame("Frames must be JSON objects.") from None
    pending = [content]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if (unstorable := unstorable_character(value)) is not None:
                raise BadFrame(f"Text may not contain {unstorable}.")
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return content


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """Frames: `send_message` (the send body) and `cancel` in; API.md's events out.

    Channels hands a consumer its frames one at a time, so every exchange runs in its own task:
    a `cancel` or a disconnect cancels that task and the pipeline settles it as `cancelled`.
    """

    # Nothing reaches a socket from other processes (no groups, no channel sends), so it does not
    # subscribe to the channel layer: on channels-redis that subscription is one blocking read per
    # open socket, and under load a read that times out closed the socket with 1011.
    channel_layer_alias = None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            # The server is stopping: daphne cancels every application before it exits, and no
            # disconnect follows. Settle this socket's exchanges as `cancelled` (as for a client that
            # goes away) instead of leaving them pending, without telling a socket that is closing.
            self.stopping = True
            await self._cancel_exchanges()
            raise

    async def dispatch(self, message: dict) -> None:
        """Channels' dispatch without its `aclose_old_connections()` before every message: that is a
        hop through Django's one thread-sensitive thread for each frame and each connect, queued
        behind every other socket's, to tidy a connection this consumer never uses. Its database
        work runs in `run_db`, whose wrapper (channels' `database_sync_to_async`) closes old
        connections around each call on the thread that does the work."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.via = Via("websocket")  # with its API token once authenticated, below
        self.tasks: dict[str, asyncio.Task] = {}  # request_id -> task
        self.busy: dict[str, str] = {}  # conversation id -> request_id
        self.signed_out = False  # set once closing with 4401: frames still in flight are dropped
        # Accept, then close: a close before accepting is an HTTP 403 on the wire, and the contract's
        # 4401 only reaches a client whose handshake completed.
        await self.accept()
        if self.scope.get(BUSY_SCOPE_KEY):
            self.signed_out = True
            err = ServiceUnavailable()
            await self._error(err.code, err.message, details=err.details)
            await self.close(code=TRY_AGAIN_LATER_CLOSE)
            return
        if self.user is None or not self.user.is_authenticated:
            self.signed_out = True
            await self.close(code=UNAUTHENTICATED_CLOSE)
            return
        credential = self.scope.get(CREDENTIAL_SCOPE_KEY)
        if credential is not None:
            watch().add(self, credential, self._credential_gone)
        self.via = await self._via(credential)

    @staticmethod
    async def _via(credential) -> Via:
        """This socket's door and API token (None for a session), for its usage rows; read once, at
        connect, so a send never waits for it."""
        token = None
        if credential is not None and credential.kind == "token":
            token = await run_db(token_by_digest, credential.key)
        return Via("websocket", token)

    async def _credential_gone(self) -> None:
        """The token was revoked or the session logged out (accounts.ws_auth's watch saw it)."""
        self.signed_out = True
        await self._cancel_exchanges()
        await self.close(code=UNAUTHENTICATED_CLOSE)

    async def disconnect(self, code: int) -> None:
        watch().remove(self)
        await self._cancel_exchanges()

    async def _cancel_exchanges(self) -> None:
        tasks = list(getattr(self, "tasks", {}).values())
        for task in tasks:
            task.cancel()
        if tasks:
            # Wait for the settles so nothing is lost when the socket goes.
            await asyncio.gather(*tasks, return_exceptions=True)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "send_message":
            await self._send_message(content)
        elif kind == "cancel":
            request_id = content.get("request_id")
            task = self.tasks.get(request_id) if isinstance(request_id, str) else None
            if task is None:
                await self._error("INVALID_MESSAGE", "No exchange in progress with this request_id.",
                                  request_id if isinstance(request_id, str) else None)
            else:
                task.cancel()
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self._error("INVALID_MESSAGE", "Unknown frame type; send send_message or cancel.")

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        return decode_frame(text_data)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if self.signed_out:
            return
        try:
            content = await self.decode_json(text_data) if text_data is not None else None
        except BadFrame as err:
            await self._error("INVALID_MESSAGE", str(err))
            return
        if content is None:
            await self._error("INVALID_MESSAGE", "Frames must be JSON text.")
            return
        await self.receive_json(content, **kwargs)

    async def _error(self, code: str, message: str, request_id: str | None = None,
                     details: dict | None = None) -> None:
        event: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if isinstance(request_id, str) and request_id:
            event["request_id"] = request_id
        if details:
            event["details"] = details
        await self.send_json(event)

    async def _send_message(self, content: dict) -> None:
        body = {k: v for k, v in content.items() if k != "type"}
        try:
            req = parse_send_body(body)
        except ClientError as err:
            await self._error(err.code, err.message, body.get("client_message_id"), err.details)
            return
        busy_key = req.conversation_id
        if busy_key and busy_key in self.busy:
            await self._error("RATE_LIMITED", "This conversation is already answering a message.",
                              req.client_message_id,
                              {"reason": "conversation_busy", "busy_request_id": self.busy[busy_key]})
            return
        if req.client_message_id and req.client_message_id in self.tasks:
            await self._error("RATE_LIMITED", "This message is already being answered.", req.client_message_id,
                              {"reason": "in_progress"})
            return
        # Claim the conversation before the first await, so a second frame sees it busy.
        token = req.client_message_id or f"pending-{id(req)}"
        if busy_key:
            self.busy[busy_key] = token
        task = asyncio.ensure_future(self._run(req, busy_key, token))
        self.tasks[token] = task
        _live_exchanges.add(task)
        task.add_done_callback(_live_exchanges.discard)

    async def _run(self, req, busy_key: str | None, token: str) -> None:
        request_id: str | None = req.client_message_id
        try:
            try:
                exchange = await start_exchange(self.user, req, via=self.via)
            except ClientError as err:
                await self._error(err.code, err.message, request_id, err.details)
                return
            if not isinstance(exchange, Replay):
                request_id = exchange.request_id
                if request_id != token:
                    self.tasks[request_id] = self.tasks.pop(token)
                    token = request_id
                    if busy_key:
                        self.busy[busy_key] = request_id
            async with aclosing(exchange.events()) as events:
                async for event in events:
                    if event["type"] == "stream_start" and not busy_key:
                        busy_key = event["conversation_id"]
                        self.busy.setdefault(busy_key, token)
                    await self.send_json(event)
        except asyncio.CancelledError:
            # The pipeline has settled the exchange as cancelled; tell the client, if it is still there
            # (not when the server is stopping: the client sees the socket close and reads what was stored).
            if getattr(self, "stopping", False):
                return
            try:
                await self._error("CANCELLED", "The exchange was cancelled.", request_id)
            except Exception:  # noqa: BLE001 - the socket may be gone
                pass
        except Exception:
            logger.exception("websocket exchange %s failed", request_id)
            try:
                await self._error("PROVIDER_ERROR", "The exchange failed.", request_id)
            except Exception:  # noqa: BLE001
                pass
        finally:
            self.tasks.pop(token, None)
            if busy_key and self.busy.get(busy_key) == token:
                del self.busy[busy_key]
