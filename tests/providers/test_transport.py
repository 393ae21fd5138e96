"""chat/providers/transport.py: the OpenAI-compatible providers' connections on plain asyncio.

* the SDK client the adapter uses really streams over `AsyncioStream` (httpcore's response names
  its network stream), so a renamed httpcore attribute cannot silently bring anyio back;
* TLS: a local HTTPS server with its own certificate answers when that certificate is trusted, and
  an untrusted one is a ConnectError (no request sent);
* a pooled connection the server closed without saying so is not reused: the next request opens a
  new one and succeeds;
* the read timeout counts each wait, not the whole response: a reply that trickles in for longer
  than the timeout arrives whole, one that stops mid-way is a ReadTimeout after what it sent;
* a server that never answers is a ReadTimeout, a closed port a ConnectError, a connection cut
  mid-body a ReadError/RemoteProtocolError: the errors httpx maps and the SDK classifies as before;
* a streamed answer is read to the body's end after `[DONE]`, so its kept-alive connection serves
  the next answer; a body held open after `[DONE]` costs its connection, never the answer.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import threading

import httpx2
import pytest

from chat.providers.openai_compat import openai_client
from chat.providers.transport import AsyncioStream, AsyncioTransport

pytestmark = pytest.mark.asyncio


class Server(threading.Thread):
    """A one-thread HTTP/1.1 server on a raw socket: `reply(n, conn)` answers its n-th request."""

    def __init__(self, reply, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(daemon=True)
        self.reply, self.tls = reply, tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.connections = 0

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            raise ConnectionError
                        data += chunk
                    self.requests += 1
                    if not self.reply(self.requests, conn):
                        break
            except (OSError, ConnectionError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def stop(self) -> None:
        self.sock.close()


def ok(body: bytes = b"hello", close: bool = False):
    def reply(n: int, conn) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        return not close
    return reply


def _certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_the_sdk_client_streams_over_asyncio():
    server = Server(ok(b'{"data": []}'))
    server.start()
    try:
        client = openai_client("k", f"http://127.0.0.1:{server.port}/v1", 5)
        async with client._client.stream("GET", f"http://127.0.0.1:{server.port}/v1/models") as response:
            assert isinstance(response.extensions["network_stream"], AsyncioStream)
            assert (await response.aread()) == b'{"data": []}'
    finally:
        server.stop()


async def test_tls_with_a_trusted_and_an_untrusted_certificate(tmp_path):
    cert, key = _certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = Server(ok(b"secret"), tls=tls)
    server.start()
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx2.AsyncClient(transport=AsyncioTransport(verify=trusted)) as client:
            response = await client.get(f"https://localhost:{server.port}/")
            assert (response.status_code, response.text) == (200, "secret")
            assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
        async with httpx2.AsyncClient(transport=AsyncioTransport()) as client:  # the system's roots only
            with pytest.raises(httpx2.ConnectError):
                await client.get(f"https://localhost:{server.port}/")
        assert server.requests == 1
    finally:
        server.stop()


async def test_a_connection_the_server_closed_is_not_reused():
    server = Server(ok(close=True))  # closes after each reply without `Connection: close`
    server.start()
    try:
        async with httpx2.AsyncClient(transport=AsyncioTransport()) as client:
            first = await client.get(f"http://127.0.0.1:{server.port}/")
            await asyncio.sleep(0.05)  # the FIN arrives
            second = await client.get(f"http://127.0.0.1:{server.port}/")
        assert (first.status_code, second.status_code) == (200, 200)
        assert (server.requests, server.connections) == (2, 2)
    finally:
        server.stop()


async def test_timeouts_refusals_and_cuts_are_httpx_errors():
    silent = Server(lambda n, conn: threading.Event().wait(2) and False)
    cut = Server(lambda n, conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part") and False)
    silent.start()
    cut.start()
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        async with httpx2.AsyncClient(transport=AsyncioTransport(), timeout=0.3) as client:
            with pytest.raises(httpx2.ReadTimeout):
                await client.get(f"http://127.0.0.1:{silent.port}/")
            with pytest.raises(httpx2.ConnectError):
                await client.get(f"http://127.0.0.1:{closed_port}/")
            with pytest.raises((httpx2.ReadError, httpx2.RemoteProtocolError)):
                await client.get(f"http://127.0.0.1:{cut.port}/")
    finally:
        silent.stop()
        cut.stop()


def _trickle(pieces: int, gap: float, stall_after: int | None = None):
    """A chunked reply of `pieces` pieces `gap` s apart; with `stall_after`, silence after that many."""
    def reply(n: int, conn) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(pieces):
            if stall_after is not None and i >= stall_after:
                threading.Event().wait(3)
                return False
            conn.sendall(b"1\r\n%d\r\n" % (i % 10))
            threading.Event().wait(gap)
        conn.sendall(b"0\r\n\r\n")
        return False
    return reply


async def test_the_read_timeout_is_per_wait_not_per_response():
    steady, stalling = Server(_trickle(6, 0.12)), Server(_trickle(6, 0.05, stall_after=2))
    steady.start()
    stalling.start()
    try:
        async with httpx2.AsyncClient(transport=AsyncioTransport(), timeout=0.4) as client:
            started = asyncio.get_running_loop().time()
            response = await client.get(f"http://127.0.0.1:{steady.port}/")
            assert response.text == "012345"
            assert asyncio.get_running_loop().time() - started > 0.5  # longer than the timeout, in all
            seen = []
            with pytest.raises(httpx2.ReadTimeout):
                async with client.stream("GET", f"http://127.0.0.1:{stalling.port}/") as stream:
                    async for piece in stream.aiter_raw():
                        seen.append(piece)
            assert b"".join(seen) == b"01"
    finally:
        steady.stop()
        stalling.stop()


async def test_every_connection_of_a_busy_moment_is_kept_for_the_next_exchanges():
    """150 answers at once, then 150 more: the second round reuses the first round's 150 connections
    (the SDK's own limits keep only 100 alive, and the other 50 exchanges each opened a new one)."""
    connections = waiting = 0
    release = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections, waiting
        connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                waiting += 1
                await release.wait()  # every request of a round is in flight at once
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    client = openai_client("k", url, 5)._client  # the SDK's httpx client, as the adapter makes it
    try:
        for _ in range(2):
            release.clear()
            waiting = 0
            requests = [asyncio.ensure_future(client.get(f"{url}/models")) for _ in range(150)]
            while waiting < 150:
                await asyncio.sleep(0.01)
            release.set()
            assert [r.status_code for r in await asyncio.gather(*requests)] == [200] * 150
        assert connections == 150
    finally:
        await client.aclose()
        server.close()


def _sse(*events: str) -> bytes:
    """A streamed completion as OpenAI sends it: SSE events, chunked, kept alive."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(e.encode()) + 2, e.encode() + b"\n\n") for e in events)
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + body)


ANSWER = _sse(
    'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hello "},"finish_reason":null}]}',
    'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"there."},"finish_reason":"stop"}]}',
    'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}',
    "data: [DONE]",
)


async def _sse_server(end_body: bool):
    """A keep-alive OpenAI-compatible server answering every request with ANSWER; `end_body` False:
    it never sends the body's last chunk (a provider holding its body open after [DONE])."""
    seen = {"connections": 0}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(ANSWER + (b"0\r\n\r\n" if end_body else b""))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", seen


async def _answers(settings, base_url: str, times: int) -> list[list]:
    from chat.providers import get_provider
    from chat.providers.base import ChatRequest
    from tests.fakes.fixtures import _point

    _point(settings, "openai", base_url)
    return [[item async for item in get_provider("openai").stream(ChatRequest(model="gpt-4o", message="hi"))]
            for _ in range(times)]


async def test_a_streamed_answer_hands_its_connection_back_for_the_next(settings):
    """A streamed answer is read to its body's end after [DONE], so its connection goes back to the
    pool: three answers in a row, one connection (closed unread, each answer connected anew)."""
    server, base_url, seen = await _sse_server(end_body=True)
    try:
        answers = await _answers(settings, base_url, 3)
    finally:
        server.close()
    for items in answers:
        assert items[:2] == ["Hello ", "there."] and items[2].completion_tokens == 2
    assert seen["connections"] == 1


async def test_a_body_left_open_after_done_costs_its_connection_not_the_answer(settings, monkeypatch):
    from chat.providers import openai_compat

    monkeypatch.setattr(openai_compat, "END_OF_BODY_SECONDS", 0.2)
    server, base_url, seen = await _sse_server(end_body=False)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await _answers(settings, base_url, 2)
        took = loop.time() - started
    finally:
        server.close()
    for items in answers:
        assert items[:2] == ["Hello ", "there."] and items[2].completion_tokens == 2
    assert took < 2 * 0.2 + 1.0
    assert seen["connections"] == 2  # each unfinished body's connection was dropped


async def test_idle_pooled_connections_are_not_probed_for_each_request(monkeypatch):
    """httpcore asks every idle pooled connection whether it is readable, for each request it assigns.
    A connection whose transport reads learns of a server's close or stray bytes from the loop (its
    buffer), so the socket is probed (a system call) only for one whose reading is paused."""
    from chat.providers import transport

    probes = []
    real_probe = transport.is_socket_readable
    monkeypatch.setattr(transport, "is_socket_readable", lambda sock: probes.append(sock) or real_probe(sock))
    server = Server(ok())
    server.start()
    try:
        async with httpx2.AsyncClient(transport=AsyncioTransport()) as client:
            url = f"http://127.0.0.1:{server.port}/"
            streams = []
            for _ in range(3):
                response = await client.get(url)
                assert response.status_code == 200
                streams.append(response.extensions["network_stream"])
            assert probes == []
            stream = streams[-1]
            assert stream.get_extra_info("is_readable") is False
            stream.transport.pause_reading()  # as a held exchange's connection is (ReadPace)
            assert stream.get_extra_info("is_readable") is False
            assert len(probes) == 1
            stream.transport.resume_reading()
    finally:
        server.stop()
