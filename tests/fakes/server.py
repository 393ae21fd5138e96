"""A tiny scripted HTTP server on 127.0.0.1 (port 0) in a background thread, for the fakes.

Threads rather than asyncio so a fake works the same under any event loop a test uses, and a
handler that stalls (to provoke timeouts) never blocks the test's own loop.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    @property
    def json(self) -> Any:
        return self.body


@dataclass
class Action:
    """What the fake does for one request: a failure, or a stream (possibly cut off or slow)."""

    kind: str  # "fail" or "stream"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    events: list[str] | None = None  # SSE events; None: built from the script when the request comes
    disconnect_after: int | None = None  # close the socket after this many events
    end_after: int | None = None  # end the body cleanly after this many events (a stream cut short upstream)
    delay_before: float = 0.0  # seconds before the response headers
    delay_between: float = 0.0  # seconds between events


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeServer:
    """Base of the fakes: records requests, answers each from a queue of one-shot actions, else
    from the current script (which stays until replaced)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        # Streams whose client went away before the end (a cancelled exchange closes its stream).
        self.client_disconnects = 0
        self.client_gone = threading.Event()
        self._queue: deque[Action] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # http.server's naming
                fake._handle(self)

            do_GET = do_POST  # noqa: N815

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- scripting helpers shared by the fakes ----------------------------------------------

    def _push(self, action: Action, times: int = 1) -> None:
        with self._lock:
            for _ in range(times):
                self._queue.append(action)

    def fail_next(self, status: int = 429, *, retry_after: float | str | None = None, times: int = 1,
                  body: Any = None) -> None:
        """The next `times` requests fail with `status` (429 carries Retry-After when given)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self._push(Action("fail", status=status, headers=headers, body=body if body is not None else
                          self.error_body(status)), times)

    def stall_next(self, seconds: float, times: int = 1) -> None:
        """The next request waits `seconds` before answering at all (to provoke a timeout)."""
        action = self._stream_action()
        action.delay_before = seconds
        self._push(action, times)

    def disconnect_after(self, n: int) -> None:
        """The next stream sends `n` content events, then the connection drops mid-body."""
        action = self._stream_action()
        action.disconnect_after = n
        self._push(action)

    def end_after(self, n: int) -> None:
        """The next stream sends `n` events, then ends its body cleanly: no finish reason, no usage,
        no `[DONE]` (what a proxy or an upstream that gave up sends)."""
        action = self._stream_action()
        action.end_after = n
        self._push(action)

    def slow_stream(self, seconds_between: float) -> None:
        """The next stream waits `seconds_between` between events (a stalled stream mid-answer)."""
        action = self._stream_action()
        action.delay_between = seconds_between
        self._push(action)

    def last_request(self) -> Recorded:
        assert self.requests, "the fake received no request"
        return self.requests[-1]

    # --- for subclasses ------------------------------------------------------------------------

    def error_body(self, status: int) -> Any:
        return {"error": {"message": f"fake error {status}", "code": status}}

    def _stream_action(self) -> Action:
        return Action("stream")

    def events_for(self, recorded: Recorded) -> list[str]:
        """The SSE events (serialised, each ending in a blank line) answering one request."""
        raise NotImplementedError

    def handle_other(self, handler: BaseHTTPRequestHandler, recorded: Recorded) -> bool:
        """Answer a request that is not a stream (e.g. countTokens); True if answered."""
        return False

    # --- request handling ----------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        parts = urlsplit(handler.path)
        recorded = Recorded(handler.command, parts.path, parse_qs(parts.query),
                            {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.requests.append(recorded)
            action = self._queue.popleft() if self._queue else None
        try:
            if self.handle_other(handler, recorded):
                return
            action = action or self._stream_action()
            if action.kind == "stream" and action.events is None:
                action.events = self.events_for(recorded)
            if action.delay_before:
                time.sleep(action.delay_before)
            if action.kind == "fail":
                self._send_json(handler, action.status, action.body, action.headers)
            else:
                self._send_stream(handler, action)
        except (BrokenPipeError, ConnectionResetError, OSError):
            # The client gave up (timeout, cancel): nothing more to send.
            with self._lock:
                self.client_disconnects += 1
            self.client_gone.set()

    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()

    @staticmethod
    def _send_stream(handler: BaseHTTPRequestHandler, action: Action) -> None:
        # Chunked, as real SSE endpoints are: a dropped connection is then a truncated body the
        # client can detect, not an ordinary end of stream.
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        # Said, not only done: without the header the client pools the socket we are about to close
        # and its next request (a retry 0 s later) can land on it and fail as "could not reach".
        handler.send_header("Connection", "close")
        handler.end_headers()

        def chunk(text: str) -> None:
            data = text.encode()
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            handler.wfile.flush()

        for index, event in enumerate(action.events):
            if action.end_after is not None and index >= action.end_after:
                break
            if action.disconnect_after is not None and index >= action.disconnect_after:
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
                return
            if index and action.delay_between:
                time.sleep(action.delay_between)
            chunk(event)
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
        handler.close_connection = True
