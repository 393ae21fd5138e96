"""The browser fixtures of tests/e2e (a real daphne and Debian's Chromium) for the usage page's tokens."""

from tests.e2e.conftest import (  # noqa: F401 - fixtures
    browser,
    chromium_path,
    e2e_db,
    fake_gemini,
    fake_openai,
    page,
    server_url,
    shoot,
)
