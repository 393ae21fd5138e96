"""What a person sees on the chat page: only what they asked for, at desktop and at phone width.

The figure tests check numbers; these check the page around them. A conversation page once showed
a bar listing every message as "user msg_..." above the chat, and titles and previews kept their
markdown signs: nothing here may show an id, raw markdown in a one-line place, or debug text.
Each check is made on the page as it streams, after a reload, and at 390 px with the drawer open,
and each state is saved as a screenshot to look at (screenshots/).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_browser import sign_up

pytestmark = pytest.mark.e2e

IDS = re.compile(r"\b(?:msg|conv)_\d")
DEBUG = re.compile(r"\b(?:None|undefined|NaN|null|Traceback)\b|\[object |\{\{|\{%")
MARKDOWN = re.compile(r"\*\*|__|`|\]\(|(?:^|\s)#{1,6}\s|^\s*[>*-]\s")
WELCOME = {"Welcome to ChatLima."}  # the one flash message sign-up gives
QUESTION = "# Trip plan\nWhat does a **token** cost?"


def visible_problems(page) -> list[str]:
    text = page.inner_text("body")
    problems = [f"id {m.group(0)!r}" for m in IDS.finditer(text)]
    problems += [f"debug text {m.group(0)!r}" for m in DEBUG.finditer(text)]
    one_liners = page.locator("#chat-title, .conv-title, .conv-preview")
    for i in range(one_liners.count()):
        line = one_liners.nth(i).inner_text()
        if MARKDOWN.search(line):
            problems.append(f"markdown in {line!r}")
    flash = page.locator(".flash li")
    problems += [f"flash {flash.nth(i).inner_text()!r}" for i in range(flash.count())
                 if flash.nth(i).inner_text() not in WELCOME]
    return problems


def ask(page, answers: int) -> None:
    """Send the question and wait until the page shows `answers` finished answers."""
    page.fill("#message-input", QUESTION)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(n) => document.querySelectorAll('article.message-assistant[aria-busy=\"false\"]').length === n"
        " && !document.getElementById('send-button').disabled", arg=answers, timeout=20_000)


def test_the_chat_page_shows_nothing_a_user_did_not_ask_for(browser, server_url, shoot):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_up(page, "looker")
        assert visible_problems(page) == []
        ask(page, 1)
        assert visible_problems(page) == []
        assert page.inner_text("#chat-title") == "Trip plan"
        ask(page, 2)  # a second exchange: the sidebar entry and the title as the page updates them
        assert visible_problems(page) == []
        shoot(page, "seen-desktop-live")

        page.reload()
        assert page.locator("article.message").count() == 4
        assert page.locator('[data-badge="output"][data-state="streaming"]').count() == 0
        assert visible_problems(page) == []
        assert page.inner_text("#chat-title") == "Trip plan"
        # The answer's markdown is rendered, not shown as signs.
        assert page.locator("article.message-assistant .bubble-content strong").count() >= 2
        shoot(page, "seen-desktop-reloaded")

        page.set_viewport_size({"width": 390, "height": 844})
        assert visible_problems(page) == []
        shoot(page, "seen-phone")
        page.click("#sidebar-toggle")
        assert page.locator("#sidebar").is_visible()
        assert visible_problems(page) == []
        shoot(page, "seen-phone-drawer")
    finally:
        context.close()
