"""End-to-end fixtures: a real daphne (HTTP + WebSocket) and a real headless Chromium.

Why not pytest-django's `live_server`: it is WSGI only, so it has no WebSocket. Why not the test
database: on SQLite it lives in memory and another process cannot see it. So the browser tests get
their own database for the module, which the server process and the test both reach:

* SQLite (the default): a fresh file in a temporary directory;
* PostgreSQL (`DATABASE_URL=postgres://...`): a fresh database `<name>_e2e_<pid>` on the same
  server, dropped afterwards (so parallel runs and other helpers' test databases never collide).

`manage.py migrate` prepares it in a subprocess, daphne (tests/daphne.py, as for every test that
needs a real server) serves `chatlima.asgi:application` on a free port with the offline model at a
quick pace, and Gemini and OpenAI pointed at the fake servers of tests/fakes (the real SDKs:
Gemini's figures billed by a "provider", OpenAI's left to the estimate, which counts with the BPE
tokenizer), and the tests read what was stored with plain SQL (the test process's own Django
connection stays on pytest-django's test database, unused here).

Chromium is Debian's (`/usr/bin/chromium`, `make e2e-deps`), driven by Playwright's
`executable_path`; nothing is ever downloaded. Without it the tests skip, except in CI, where a
missing browser is a failure.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest

from tests.daphne import ROOT, Daphne, free_port  # noqa: F401 - free_port: still importable from here

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = ROOT / "screenshots"
# Words of the offline model's answer arrive this many ms apart: quick, yet slow enough to watch.
CHUNK_DELAY_MS = 8
# The least answer a budget may lower max_tokens to, on the test server.
MIN_OUTPUT_TOKENS = 64


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true")


class E2EDatabase:
    """The module's own database: its URL for the server, and plain SQL reads for the tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_postgres = url.startswith(("postgres://", "postgresql://"))

    def rows(self, sql: str, *params) -> list[dict]:
        if self.is_postgres:
            import psycopg
            from psycopg.rows import dict_row

            with psycopg.connect(self.url, row_factory=dict_row) as conn:
                return list(conn.execute(sql, params).fetchall())
        conn = sqlite3.connect(urlparse(self.url).path, timeout=20)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql.replace("%s", "?"), params).fetchall()]
        finally:
            conn.close()

    def execute(self, sql: str, *params) -> None:
        if self.is_postgres:
            import psycopg

            with psycopg.connect(self.url) as conn:
                conn.execute(sql, params)
            return
        conn = sqlite3.connect(urlparse(self.url).path, timeout=20)
        try:
            with conn:
                conn.execute(sql.replace("%s", "?"), params)
        finally:
            conn.close()


def _server_env(database_url: str, gemini_url: str | None = None, openai_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if gemini_url:
        # A real provider SDK against the local fake (tests/fakes), for figures billed by a provider.
        env.update({"GEMINI_API_KEY": "fake-e2e-key", "GEMINI_BASE_URL": gemini_url})
    if openai_url:
        env.update({"OPENAI_API_KEY": "sk-fake-e2e-key", "OPENAI_BASE_URL": openai_url})
    env.update({
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "chatlima.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CHATLIMA_OFFLINE_CHUNK_DELAY_MS": str(CHUNK_DELAY_MS),
        # Low enough that a budget can cut the offline model's short answer visibly short.
        "CHATLIMA_MIN_OUTPUT_TOKENS": str(MIN_OUTPUT_TOKENS),
        "CHATLIMA_SERVE_STATIC": "1",
        # The attachment tests serve their pages from a local HTTP server (loopback).
        "CHATLIMA_FETCH_ALLOW_PRIVATE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: install Debian's chromium (make e2e-deps)"
        if in_ci():
            pytest.fail(message + "; CI must run the browser tests", pytrace=False)
        pytest.skip(message + " to run the browser tests")
    return CHROMIUM


@pytest.fixture(scope="module")
def e2e_db(tmp_path_factory) -> Iterator[E2EDatabase]:
    base = os.environ.get("DATABASE_URL", "")
    created = None
    if base.startswith(("postgres://", "postgresql://")):
        import psycopg

        parsed = urlparse(base)
        name = f"{(parsed.path.lstrip('/') or 'chatlima')}_e2e_{os.getpid()}"
        admin_url = urlunparse(parsed._replace(path="/postgres"))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        created = (admin_url, name)
        url = urlunparse(parsed._replace(path=f"/{name}"))
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'e2e.sqlite3'}"
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=_server_env(url),
                   check=True, capture_output=True)
    yield E2EDatabase(url)
    if created:
        import psycopg

        admin_url, name = created
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator:
    from tests.fakes.gemini_server import FakeGemini

    fake = FakeGemini().start()
    fake.script(
        deltas=[f"Billed word {i}. " for i in range(40)],
        usage={"prompt": 41, "candidates": 57, "thoughts": 30},
    )
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def fake_openai() -> Iterator:
    from tests.fakes.openai_server import FakeOpenAI

    fake = FakeOpenAI().start()
    # No usage chunk: the server charges its own estimate, so the user bubble shows the prompt
    # estimate as counted with the BPE tokenizer.
    fake.script(deltas=[f"Counted word {i}. " for i in range(20)], include_usage=False)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def server_url(e2e_db, fake_gemini, fake_openai, tmp_path_factory) -> Iterator[str]:
    env = _server_env(e2e_db.url, fake_gemini.base_url, fake_openai.base_url)
    server = Daphne(env, tmp_path_factory.mktemp("daphne"), ready_path="/accounts/login/").start()
    try:
        yield server.base
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, server_url):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def shoot():
    SCREENSHOTS.mkdir(exist_ok=True)

    def save(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
