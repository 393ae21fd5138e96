"""A real daphne serving ChatLima (tests/daphne.py; its own database: tests/e2e/conftest.py's `e2e_db`), with
OpenAI pointed at the fake OpenAI server of tests/fakes; the tests drive it with the official `openai` SDK.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daphne import Daphne
from tests.e2e.conftest import _server_env, e2e_db  # noqa: F401 - e2e_db: the shared database
from tests.fakes.fixtures import fake_openai  # noqa: F401 - the fake provider's fixture

PASSWORD = "a-long-door-password-1"
FAKE_USAGE = {"prompt_tokens": 31, "completion_tokens": 47, "cached_tokens": 9, "reasoning_tokens": 12}
MODEL = "gpt-4o"  # served by the fake OpenAI server, priced in the seeded table


class DoorServer(Daphne):
    """The door's daphne: its users sign up with PASSWORD and get their budget row at once."""

    def register(self, username: str, password: str = PASSWORD, timeout: float = 10) -> str:
        token = super().register(username, password, timeout)
        # The budget row comes on first use: make it, so a test can lower its limits.
        status, body = self.get_json("/api/v1/budget", token=token)
        assert status == 200, (status, body)
        return token


def door_env(database_url: str, openai_url: str) -> dict[str, str]:
    env = _server_env(database_url, openai_url=openai_url)
    env.pop("REDIS_URL", None)
    env["CHATLIMA_OFFLINE_CHUNK_DELAY_MS"] = "20"  # slow enough to close a stream mid-way
    env["CHATLIMA_PROVIDER_MAX_RETRIES"] = "0"
    env["CHATLIMA_LOGIN_THROTTLE"] = "1000/min"  # every test signs up its own users
    env["CHATLIMA_PROVIDER_TIMEOUT_SECONDS"] = "3"  # a stalled provider is a 504 within seconds
    return env


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
    server = DoorServer(door_env(e2e_db.url, fake_openai_door.base_url), tmp_path_factory.mktemp("door")).start()
    try:
        yield server
    finally:
        server.stop()
