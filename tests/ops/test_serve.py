"""`python -m chatlima.serve`: several daphne processes sharing one listening socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from django.conf import settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def test_serve_runs_the_asked_number_of_workers_on_one_port_and_stops_them_all(tmp_path):
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}", "DJANGO_DEBUG": "1"}
    env.pop("REDIS_URL", None)
    env.pop("ASGI_THREADS", None)
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "chatlima.serve", "--workers", "2", "-b", "127.0.0.1", "-p", str(port)],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while body is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.2)
        assert body is not None and body["checks"]["database"] == "ok", log.read_text()
        workers = _children(server.pid)
        assert len(workers) == 2, log.read_text()
        # Each worker's database thread pool is sized for the GIL it shares (chatlima/serve.py).
        for pid in workers:
            assert b"ASGI_THREADS=4" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            # ... and runs daphne on uvloop (chatlima/worker.py): its compiled loop is loaded.
            assert "uvloop/loop." in Path(f"/proc/{pid}/maps").read_text(), pid
        for _ in range(6):  # both workers accept on the same socket; every request is answered
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                assert response.status == 200
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert server.returncode == 0, log.read_text()
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def _loop_of_a_worker(env: dict[str, str]) -> str:
    """The class of the loop daphne's server module makes, in a process set up as chatlima.worker does."""
    code = ("import asyncio, chatlima.worker as w; w.use_uvloop(); import daphne.server as s; "
            "print(type(s.twisted_loop).__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, env={**os.environ, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_the_worker_runs_daphne_on_uvloop_unless_told_otherwise():
    assert _loop_of_a_worker({}) == "uvloop"
    assert _loop_of_a_worker({"CHATLIMA_EVENT_LOOP": "asyncio"}).startswith("asyncio")


def test_the_worker_refuses_to_choose_once_daphne_has_made_its_loop():
    code = "import daphne.server, chatlima.worker as w; w.main()"
    out = subprocess.run([sys.executable, "-c", code], cwd=settings.BASE_DIR, capture_output=True, text=True)
    assert out.returncode != 0 and "before daphne is imported" in out.stderr
