"""Attachments' fixtures: a guard that lets no socket leave this machine, and a local web server.

The guard wraps `socket.socket.connect` for every test here: a connection to anything but a
loopback address is recorded in `connections_refused` and refused, so even a wrong fetcher
cannot send traffic elsewhere, and a test can assert that no attempt was made.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fakes.fixtures import fake_gemini, fake_openai  # noqa: F401 - the fake providers' fixtures


def _is_loopback(address) -> bool:
    if not isinstance(address, tuple):
        return True  # a Unix socket (a local database or Redis)
    try:
        return ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def connections_refused(monkeypatch) -> list:
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock, address):
        if not _is_loopback(address):
            attempts.append(address)
            raise ConnectionRefusedError(f"tests may only connect to loopback, not {address!r}")
        return real_connect(sock, address)

    def connect_ex(sock, address):
        if not _is_loopback(address):
            attempts.append(address)
            return 111
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return attempts


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # no Content-Length: the body streams in pieces
    delay: float = 0.0  # seconds between pieces


class LocalSite:
    """Pages served on 127.0.0.1 by a real HTTP server; records each request's path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                site.requests.append((self.path, dict(self.headers)))
                route = site.routes.get(self.path, Route(404, b"not here", {"Content-Type": "text/plain"}))
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for start in range(0, len(route.body), 1024):
                            piece = route.body[start:start + 1024]
                            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                            self.wfile.flush()
                            time.sleep(route.delay)
                        self.wfile.write(b"0\r\n\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def page(self, path: str, body: str | bytes, content_type: str = "text/html; charset=utf-8", **kwargs) -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(body=data, headers={"Content-Type": content_type}, **kwargs)
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = Route(status=status, headers={"Location": location})
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[LocalSite]:
    local = LocalSite()
    yield local
    local.close()


@pytest.fixture
def allow_private(settings):
    """Reaching the local site needs the fetcher's private-address refusal off, as API.md allows."""
    settings.CHATLIMA_FETCH_ALLOW_PRIVATE = True
    return settings


ARTICLE = """<!doctype html><html><head><title>Honest token accounting</title></head><body>
<nav><a href="/">Home</a> <a href="/about">About</a> <a href="/login">Log in</a></nav>
<article><h1>Honest token accounting</h1>
<p>Every exchange with a model leaves exactly one usage row, whatever its outcome, so the budget
never drifts from what the provider billed.</p>
<p>Estimates are marked as estimates, and only where the provider gave no figure of its own.</p>
</article>
<footer>Copyright 2026 Example footer text that is boilerplate.</footer></body></html>"""
