"""The OpenAI-compatible providers' connections on plain asyncio, not anyio.

A provider streams each delta as its own TCP segment, so the server wakes once per delta for every
live answer. The openai SDK reads through httpx and httpcore, whose network backend under asyncio is
anyio's: every read opens an anyio cancel scope (`fail_after`) and goes through anyio's stream on
top of an asyncio protocol. The CPU one delta costs the reader (the
same SDK, h11 parsing and line splitting; interleaved, median of 10 streams of 200 deltas 3 ms
apart): 369-469 us through anyio, 298-348 us through this backend; `bench/delta_floor.py` prints
both beside a raw asyncio read of the same socket (90-110 us). Under heavy load several deltas
share one read and the difference shrinks (README, performance notes, third round).

httpcore's network backend is its documented extension point (`AsyncNetworkBackend`,
`AsyncNetworkStream`); httpx's transport does not take one, so `AsyncioTransport` sets it on the
connection pool it built (its `_network_backend`; tests/providers/test_transport.py fails if a new
httpcore renames it). A proxy from the environment keeps httpx's own transport and anyio. TLS is
asyncio's `start_tls`; errors are httpcore's (ConnectError, ReadError, ReadTimeout, ...), which
httpx and then the SDK turn into the same exceptions as before.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import httpcore2
import httpx2
from httpcore2._utils import is_socket_readable  # the check httpcore's own backends use


class _Buffer(asyncio.Protocol):
    """What arrived on one connection, and one reader waiting for more."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future | None = None
        self.writable: asyncio.Future | None = None  # set while the transport's write buffer is full

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None


async def _within(awaitable, timeout: float | None, error: type[Exception]):
    if timeout is None:
        return await awaitable
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError as exc:
        raise error(f"no progress within {timeout} s") from exc


class ReadPace:
    """An exchange's hold on its provider connection between frames (chat/exchange/relay.py).

    The reading task calls `pace_reads(pace)` once; each read it then makes on one of these
    connections registers that connection with the pace. `hold(seconds)` stops reading its socket for
    that long (asyncio's `pause_reading`: the kernel keeps what arrives), so the deltas sent
    meanwhile come in one read instead of one wake-up each. `forget()` releases the connection, as
    the stream ends: a connection going back to the pool is never left held. Reads on other
    transports (a proxy's, google-genai's) register nothing, and `hold` does nothing for them.
    `hold(seconds, then)` calls `then()` once the hold ends, however it ends (its time is up, or
    `release`/`forget`), so the holder needs no timer of its own."""

    __slots__ = ("handle", "stream", "then", "waits")

    def __init__(self) -> None:
        self.stream: AsyncioStream | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.then: Callable[[], None] | None = None
        self.waits = 0  # reads that waited for the socket: the wake-ups the provider cost

    def hold(self, seconds: float, then: Callable[[], None] | None = None) -> bool:
        """Stop reading for `seconds`; False (and nothing held, `then` not kept) where no
        connection of ours is registered or one is already held."""
        stream = self.stream
        if stream is None or self.handle is not None or stream.transport.is_closing():
            return False
        stream.transport.pause_reading()
        self.handle = asyncio.get_running_loop().call_later(seconds, self.release)
        self.then = then
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
            if self.stream is not None and not self.stream.transport.is_closing():
                self.stream.transport.resume_reading()
            then, self.then = self.then, None
            if then is not None:
                then()

    def forget(self) -> None:
        self.release()
        self.stream = None


_pace: ContextVar[ReadPace | None] = ContextVar("chatlima_read_pace", default=None)


def pace_reads(pace: ReadPace) -> None:
    """The reads this task (and what it starts) makes from now on register with `pace`."""
    _pace.set(pace)


class AsyncioStream(httpcore2.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, buffer: _Buffer) -> None:
        self.transport = transport
        self.buffer = buffer
        # The read timeout as one timer per connection, re-armed only when it fires early (as the
        # exchange's silence timer does): not an `asyncio.timeout` with its own timer per read.
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def _expire(self) -> None:
        self.timer = None
        if self.deadline is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:
            self.timer = loop.call_at(self.deadline, self._expire)
            return
        waiter = self.buffer.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(httpcore2.ReadTimeout("the provider sent nothing within the read timeout"))

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        buffer = self.buffer
        pace = _pace.get()
        if pace is not None and pace.stream is not self:
            pace.forget()  # a retry's new connection: the old one is not held any more
            pace.stream = self
        if not buffer.data and not buffer.ended:
            if pace is not None:
                pace.waits += 1
            loop = asyncio.get_running_loop()
            waiter = buffer.waiter = loop.create_future()
            if timeout is not None:
                self.deadline = loop.time() + timeout
                if self.timer is None or self.timer.when() > self.deadline:
                    if self.timer is not None:
                        self.timer.cancel()
                    self.timer = loop.call_at(self.deadline, self._expire)
            try:
                await waiter
            finally:
                buffer.waiter = None
                self.deadline = None
        if buffer.data:
            data = bytes(buffer.data[:max_bytes])
            del buffer.data[:max_bytes]
            return data
        if buffer.error is not None:
            raise httpcore2.ReadError(str(buffer.error) or type(buffer.error).__name__)
        return b""  # the peer closed the connection

    async def write(self, data: bytes, timeout: float | None = None) -> None:
        if not data:
            return
        if self.transport.is_closing():
            raise httpcore2.WriteError("the connection is closed")
        self.transport.write(data)
        if self.buffer.writable is not None:
            await _within(asyncio.shield(self.buffer.writable), timeout, httpcore2.WriteTimeout)

    async def aclose(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> AsyncioStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await _within(
                loop.start_tls(self.transport, self.buffer, ssl_context, server_hostname=server_hostname),
                timeout, httpcore2.ConnectTimeout)
        except (OSError, ssl.SSLError) as exc:
            self.transport.close()
            raise httpcore2.ConnectError(str(exc)) from exc
        return AsyncioStream(transport, self.buffer)

    def get_extra_info(self, info: str) -> Any:
        sock = self.transport.get_extra_info("socket")
        if info == "ssl_object":
            return self.transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self.transport.get_extra_info("sockname")
        if info == "server_addr":
            return self.transport.get_extra_info("peername")
        if info == "socket":
            return sock
        if info == "is_readable":
            # A pooled connection the server has closed (or sent to unasked) must not be reused. While
            # the transport reads, the loop hands both to the buffer (data_received, eof_received), so
            # the socket itself is probed only when it does not: httpcore asks of every idle
            # connection in the pool for each request it assigns, and a probe is a system call.
            if self.buffer.data or self.buffer.ended:
                return True
            if self.transport.is_reading():
                return False
            return sock is not None and is_socket_readable(sock)
        return None


async def _connect(opening, timeout: float | None, socket_options: Iterable | None) -> AsyncioStream:
    """A new connection from `opening` (the loop's create_connection coroutine), within `timeout`."""
    try:
        transport, buffer = await _within(opening, timeout, httpcore2.ConnectTimeout)
    except OSError as exc:
        raise httpcore2.ConnectError(str(exc)) from exc
    sock = transport.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)
    return AsyncioStream(transport, buffer)


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable | None = None) -> AsyncioStream:
        opening = asyncio.get_running_loop().create_connection(
            _Buffer, host, port, local_addr=(local_address, 0) if local_address else None)
        # As anyio's backend does: each small write (a request, a delta) goes out at once.
        return await _connect(opening, timeout, [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1), *(socket_options or ())])

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable | None = None) -> AsyncioStream:
        return await _connect(asyncio.get_running_loop().create_unix_connection(_Buffer, path), timeout,
                              socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioTransport(httpx2.AsyncHTTPTransport):
    """httpx's transport (same TLS settings, limits and pooling) with its connections on
    `AsyncioBackend`; behind a proxy it stays httpx's own."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if type(self._pool) is httpcore2.AsyncConnectionPool:
            self._pool._network_backend = AsyncioBackend()


def async_http_client() -> httpx2.AsyncClient:
    """The httpx client the openai SDK would make (its timeout, redirects and connection limit), on
    asyncio, keeping every connection it has open for reuse (`keep_alive_limits`)."""
    from openai import DefaultAsyncHttpxClient

    return DefaultAsyncHttpxClient(transport=AsyncioTransport(limits=keep_alive_limits()))


def keep_alive_limits() -> httpx2.Limits:
    """The SDK's limits (`openai.DEFAULT_CONNECTION_LIMITS`: 1,000 connections, 5 s keep-alive) with
    every one of them kept alive between requests, not only 100. A process streams for up to
    hundreds of users at once, each answer on a connection of its own: past 100 live answers, each
    that ended closed its connection and the next exchange opened a new one (its TCP handshake, the
    provider's TLS handshake). An idle connection still closes after `keepalive_expiry`."""
    from openai import DEFAULT_CONNECTION_LIMITS

    most = DEFAULT_CONNECTION_LIMITS.max_connections
    return httpx2.Limits(max_connections=most, max_keepalive_connections=most,
                         keepalive_expiry=DEFAULT_CONNECTION_LIMITS.keepalive_expiry)
