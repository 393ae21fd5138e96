"""A real daphne serving ChatLima, for the tests that need one on the wire (WebSockets, several
processes on one database, a server stopped or killed mid-stream).

    server = Daphne(env, tmp_path).start()      # a free loopback port, ready when GET /health is 200
    try:
        token = server.register("someone", "a-long-password-1")
        status, body = server.post_json("/api/v1/auth/revoke", token=token)
    finally:
        server.stop()                            # SIGTERM, wait, SIGKILL after the timeout

The test gives the whole environment (usually tests/e2e/conftest.py's `_server_env` plus its own
CHATLIMA_* tweaks) and a directory for the logs: each start writes a new `<name>-<n>.log` there
(several servers may share the directory under different names). The port is kept across
restarts, so `stop()` then `start()` brings the server back where its clients knew it. A server
that exits, or does not answer `ready_path` within the timeout, fails the test with its log's tail.
`workers=N` runs `python -m chatlima.serve --workers N` (N daphne processes on one socket) instead.

This module imports no test module: tests/e2e/conftest.py imports `ROOT` and `free_port` from here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAPHNE = [sys.executable, "-m", "chatlima.worker"]  # daphne as production runs it: on uvloop
LOG_TAIL = 3000  # characters of the log a failed start shows


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, wait up to `timeout` s, then SIGKILL: the end of any child process a test started."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Daphne:
    """One server process at a time on a fixed loopback port; see the module's docstring."""

    def __init__(self, env: dict[str, str], log_dir: Path, port: int | None = None, ready_path: str = "/health",
                 name: str = "daphne", workers: int | None = None) -> None:
        self.env = env
        self.log_dir = log_dir
        self.ready_path = ready_path
        self.name = name
        self.workers = workers
        self.starts = 0
        self.log_path: Path | None = None
        self._port = port or free_port()
        self._process: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self._port}/ws/chat/"

    @property
    def process(self) -> subprocess.Popen:
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        where = ["-b", "127.0.0.1", "-p", str(self._port)]
        if self.workers:
            return [sys.executable, "-m", "chatlima.serve", "--workers", str(self.workers), *where]
        return [*DAPHNE, *where, "chatlima.asgi:application"]

    def start(self, timeout: float = 30) -> Daphne:
        """Start the server (a new log file) and wait until GET `ready_path` answers 200."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        with self.log_path.open("w") as log:  # the child keeps its own copy
            self._process = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._ready():
            exit_code = self._process.poll()
            if exit_code is not None or time.monotonic() > deadline:
                self.stop()
                why = (f"exited with {exit_code}" if exit_code is not None
                       else f"did not answer {self.ready_path} within {timeout} s")
                pytest.fail(f"{self.name} on port {self._port} {why}:\n{self.log_text()[-LOG_TAIL:]}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}{self.ready_path}", timeout=2) as response:
                return response.status == 200
        except OSError:  # refused, not yet listening, or an HTTP error status (503 while /health is not healthy)
            return False

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, wait up to `timeout` s, then SIGKILL; nothing if it is not running."""
        if self._process is not None:
            stop_process(self._process, timeout)

    def signal(self, sig: int) -> None:
        """Send the server a signal of the test's own (SIGTERM mid-stream, SIGKILL); `process.wait()` after."""
        self.process.send_signal(sig)

    def log_text(self) -> str:
        """The log of the latest start ("" before the first)."""
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def request_json(self, method: str, path: str, body: dict | None = None, token: str | None = None,
                     timeout: float = 10) -> tuple[int, dict]:
        """The status and the JSON body ({} if empty, {"text": ...} if not JSON); error statuses are returned."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if method != "GET":
            headers["Content-Type"] = "application/json"
            data = json.dumps(body or {}).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _decoded(response.read())
        except urllib.error.HTTPError as err:
            return err.code, _decoded(err.read())

    def post_json(self, path: str, body: dict | None = None, token: str | None = None,
                  timeout: float = 10) -> tuple[int, dict]:
        return self.request_json("POST", path, body, token, timeout)

    def get_json(self, path: str, token: str | None = None, timeout: float = 10) -> tuple[int, dict]:
        return self.request_json("GET", path, token=token, timeout=timeout)

    def register(self, username: str, password: str, timeout: float = 10) -> str:
        """Sign a user up through the API (201 or the test fails) and return its token."""
        status, body = self.post_json("/api/v1/auth/register", {"username": username, "password": password},
                                      timeout=timeout)
        assert status == 201, (status, body)
        return body["token"]


def _decoded(raw: bytes) -> dict:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {"text": raw.decode(errors="replace")}
