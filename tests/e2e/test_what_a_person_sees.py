"""What a person sees on the chat page: only what they asked for, at desktop and at phone width.

The figure tests check numbers; these check the page around them. A conversation page once showed
a bar listing every message as "user msg_..." above the chat, and titles and previews kept their
markdown signs: nothing here may show an id, raw markdown in a one-line place, or debug text.
Each check is made on the page as it streams, after a reload, and at 390 px with the drawer open,
and each state is saved as a screenshot to look at (screenshots/).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT, _server_env
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


def background(page) -> str:
    return page.evaluate("() => getComputedStyle(document.body).backgroundColor")


LIGHT, DARK = "rgb(255, 255, 255)", "rgb(21, 23, 28)"


def test_dark_mode_follows_the_system_until_the_toggle_picks_and_remembers(browser, server_url, shoot):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server_url, color_scheme="dark")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_up(page, "night")
        ask(page, 1)
        toggle = page.get_by_role("button", name="Dark mode")
        assert background(page) == DARK and toggle.get_attribute("aria-pressed") == "true"
        assert visible_problems(page) == []
        shoot(page, "seen-dark-desktop")
        toggle.focus()
        page.keyboard.press("Enter")  # keyboard only
        assert background(page) == LIGHT and toggle.get_attribute("aria-pressed") == "false"
        page.reload()
        assert background(page) == LIGHT  # remembered over the system's choice
        page.get_by_role("button", name="Dark mode").click()
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        assert background(page) == DARK
        shoot(page, "seen-dark-phone")
        icon = page.get_attribute('link[rel="icon"]', "href")
        response = page.request.get(server_url + icon)
        assert icon.startswith("/static/") and response.status == 200 and "<svg" in response.text()
    finally:
        context.close()


def test_at_phone_width_the_drawer_is_a_usable_list_and_the_dashboard_fits(browser, server_url, e2e_db, shoot):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_up(page, "pocket")
        ask(page, 1)
        page.goto("/")
        ask(page, 1)
        toggle = page.locator("#sidebar-toggle")
        toggle.focus()
        page.keyboard.press("Enter")
        assert toggle.get_attribute("aria-expanded") == "true"
        drawer = page.locator("#sidebar").bounding_box()
        assert drawer["height"] > 500 and drawer["width"] >= 350  # not a strip: the screen below the toggle
        links = page.locator("#conversation-list a")
        assert links.count() == 2
        for i in range(2):
            box = links.nth(i).bounding_box()
            assert box["height"] >= 44 and box["y"] + box["height"] <= 844  # whole, tappable entries
        assert visible_problems(page) == []
        shoot(page, "seen-phone-drawer-list")
        links.nth(1).click()
        page.wait_for_url("**/c/**")
        assert page.locator("article.message").count() == 2

        # The dashboard reads the rollups (inline without Redis; a worker's job with it).
        subprocess.run([sys.executable, "manage.py", "rollup_usage"], cwd=ROOT, env=_server_env(e2e_db.url),
                       check=True, capture_output=True)
        page.goto("/usage/")
        assert page.locator("#models-table").is_visible()
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        page.locator("details.data-fallback summary").click()
        for table in ("#daily-table", "#models-table"):
            header = page.locator(f"{table} thead th").first.bounding_box()
            assert header["x"] >= 0 and header["x"] + header["width"] <= 390
            holder = page.locator(f"{table} >> xpath=..").bounding_box()
            assert holder["x"] + holder["width"] <= 390  # the table scrolls inside the page, not the page
        assert page.locator(".chart-wrap").bounding_box()["width"] <= 390
        shoot(page, "seen-phone-dashboard")
    finally:
        context.close()


def test_sidebar_search_rename_and_delete_by_keyboard(page, e2e_db, shoot):
    username = sign_up(page, "keeper")
    for question in ("Kyoto trains please", "Tax forms help", "Garden ideas"):
        page.goto("/")
        page.fill("#message-input", question)
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('article.message-assistant[aria-busy=\"false\"]').length === 1"
                               " && !document.getElementById('send-button').disabled", timeout=20_000)
    page.reload()
    titles = page.locator("#conversation-list .conv-title")
    assert titles.all_inner_texts() == ["Garden ideas", "Tax forms help", "Kyoto trains please"]  # newest first
    account = page.inner_text("#account-input")

    # Search: titles and message text ("offline demo" is in every answer, "kyoto" in one).
    search = page.get_by_role("searchbox", name="Search conversations")
    search.focus()
    page.keyboard.type("kyoto")
    page.keyboard.press("Enter")
    page.wait_for_url("**?q=kyoto")
    assert titles.all_inner_texts() == ["Kyoto trains please"]
    page.get_by_role("searchbox", name="Search conversations").fill("OFFLINE DEMO")
    page.keyboard.press("Enter")
    page.wait_for_url("**?q=OFFLINE+DEMO")
    assert titles.count() == 3
    shoot(page, "sidebar-search")

    # Rename, keyboard only: the button, the dialog, Enter saves.
    page.goto("/")
    rename = page.locator("#conversation-list li").nth(1).get_by_role("button", name="Rename")
    rename.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Rename conversation")
    assert dialog.is_visible()
    assert page.evaluate("() => document.activeElement.id") == "rename-input"
    page.keyboard.type("Taxes 2026")
    shoot(page, "sidebar-rename")
    page.keyboard.press("Enter")
    dialog.wait_for(state="hidden")
    assert titles.all_inner_texts() == ["Taxes 2026", "Garden ideas", "Kyoto trains please"]  # newest first
    assert page.evaluate("() => document.activeElement.textContent") == "Rename"  # focus back where it was
    rows = e2e_db.rows("SELECT c.title FROM chat_conversation c JOIN accounts_user u ON u.id = c.owner_id "
                       "WHERE u.username = %s ORDER BY c.updated_at DESC", username)
    assert rows[0]["title"] == "Taxes 2026"

    # Delete: Escape cancels, then confirmed by keyboard; the usage stays in the totals.
    delete = page.locator("#conversation-list li").nth(2).get_by_role("button", name="Delete")
    delete.focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Delete this conversation?")
    assert "Kyoto trains please" in confirm.inner_text() and "stays counted" in confirm.inner_text()
    page.keyboard.press("Escape")
    confirm.wait_for(state="hidden")
    assert titles.count() == 3
    delete.focus()
    page.keyboard.press("Enter")
    shoot(page, "sidebar-delete-confirm")
    page.get_by_role("button", name="Yes, delete").focus()
    page.keyboard.press("Enter")
    confirm.wait_for(state="hidden")
    assert titles.all_inner_texts() == ["Taxes 2026", "Garden ideas"]
    page.reload()
    assert titles.all_inner_texts() == ["Taxes 2026", "Garden ideas"]
    assert page.inner_text("#account-input") == account
    assert visible_problems(page) == []
