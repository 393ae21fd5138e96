"""A real daphne serving ChatLima (its own database: tests/e2e/conftest.py's `e2e_db`), with OpenAI
pointed at the fake OpenAI server of tests/fakes; the tests drive it with the official `openai` SDK.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, _server_env, e2e_db, free_port  # noqa: F401 - e2e_db: the shared database
from tests.fakes.fixtures import fake_openai  # noqa: F401 - the fake provider's fixture

PASSWORD = "a-long-door-password-1"
FAKE_USAGE = {"prompt_tokens": 31, "completion_tokens": 47, "cached_tokens": 9, "reasoning_tokens": 12}
MODEL = "gpt-4o"  # served by the fake OpenAI server, priced in the seeded table


class DoorServer:
    def __init__(self, database_url: str, openai_url: str, log: Path) -> None:
        env = _server_env(database_url, openai_url=openai_url)
        env.pop("REDIS_URL", None)
        env["CHATLIMA_OFFLINE_CHUNK_DELAY_MS"] = "20"  # slow enough to close a stream mid-way
        env["CHATLIMA_PROVIDER_MAX_RETRIES"] = "0"
        env["CHATLIMA_LOGIN_THROTTLE"] = "1000/min"  # every test signs up its own users
        env["CHATLIMA_PROVIDER_TIMEOUT_SECONDS"] = "3"  # a stalled provider is a 504 within seconds
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        daphne = Path(sys.executable).with_name("daphne")
        self.process = subprocess.Popen(
            [str(daphne), "-b", "127.0.0.1", "-p", str(self.port), "chatlima.asgi:application"],
            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"daphne did not start:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def post_json(self, path: str, body: dict, token: str | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.base}{path}", data=json.dumps(body).encode(), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def register(self, username: str) -> str:
        status, body = self.post_json("/api/v1/auth/register", {"username": username, "password": PASSWORD})
        assert status == 201, body
        # The budget row comes on first use: make it, so a test can lower its limits.
        request = urllib.request.Request(f"{self.base}/api/v1/budget", headers={"Authorization": f"Bearer {body['token']}"})
        with urllib.request.urlopen(request, timeout=10):
            pass
        return body["token"]


@pytest.fixture(scope="module")
def fake_openai_door() -> Iterator:
    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI().start()
    fake.script(deltas=[f"Fake word {i}. " for i in range(12)], usage=FAKE_USAGE)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def door(e2e_db, fake_openai_door, tmp_path_factory) -> Iterator[DoorServer]:  # noqa: F811 - the imported fixture
    server = DoorServer(e2e_db.url, fake_openai_door.base_url, tmp_path_factory.mktemp("door") / "daphne.log")
    try:
        yield server
    finally:
        server.stop()
