"""Message actions in a real browser (issue 15): Copy an answer, Regenerate it (versions, each with
its own cost, switched by keyboard) and Edit and resend a message, keyboard only, after a reload too."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chatlima.formats import money_short
from tests.e2e.test_browser import messages_of, sign_up

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-flash"
FIRST = ["First ", "**answer**", " about tides."]
SECOND = ["Second ", "answer, ", "shorter."]
THIRD = ["An answer ", "to the edited question."]


def rows_of(e2e_db, username: str) -> list[dict]:
    return e2e_db.rows(
        "SELECT r.request_id, r.prompt_tokens, r.completion_tokens, r.cost_estimate, r.status FROM api_usage_logs r "
        "JOIN accounts_user u ON u.id = r.user_id WHERE u.username = %s ORDER BY r.created_at, r.id", username)


def versions_of(e2e_db, username: str) -> list[dict]:
    return e2e_db.rows(
        "SELECT m.public_id, m.role, m.content, m.cost, m.completion_tokens, m.prompt_tokens, m.superseded_at, "
        "m.replaces_id FROM chat_message m JOIN accounts_user u ON u.id = m.owner_id WHERE u.username = %s "
        "ORDER BY m.timestamp, m.id", username)


def finished(page) -> None:
    page.wait_for_function("() => !document.querySelector('article.message-assistant[aria-busy=\"true\"]')"
                           " && !document.getElementById('send-button').disabled", timeout=20_000)


def press_on(page, locator, key: str = "Enter") -> None:
    """Reach a control by keyboard (focus, as Tab would) and press `key` on it."""
    locator.focus()
    assert page.evaluate("(el) => document.activeElement === el", locator.element_handle())
    page.keyboard.press(key)


def tab_to(page, name: str, limit: int = 12) -> None:
    """Tab forward until the focused control's accessible name is `name`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement && (document.activeElement.getAttribute('aria-label')"
                                " || document.activeElement.textContent.trim())")
        if focused == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


@pytest.mark.parametrize("width", [1280, 390])
def test_copy_regenerate_and_edit_by_keyboard(browser, server_url, e2e_db, fake_gemini, shoot, width):
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=server_url)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _flow(page, e2e_db, fake_gemini, shoot, width)
    finally:
        context.close()


def _flow(page, e2e_db, fake_gemini, shoot, width):
    username = sign_up(page, f"actions{width}-")
    page.select_option("#model-select", MODEL)
    fake_gemini.script(FIRST, usage={"prompt": 41, "candidates": 7})
    page.fill("#message-input", "Why are there tides?")
    page.keyboard.press("Enter")
    finished(page)
    answer = page.locator("article.message-assistant")
    assert answer.count() == 1
    # The model that wrote it, by its display name.
    assert answer.locator(".answer-model").inner_text() == "Gemini 2.5 Flash"

    # Copy: the answer's markdown source, announced.
    press_on(page, answer.get_by_role("button", name="Copy"))
    page.wait_for_function("() => document.getElementById('chat-status').textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == "".join(FIRST)

    # Regenerate, by keyboard: a new exchange, its own usage row.
    fake_gemini.script(SECOND, usage={"prompt": 43, "candidates": 4})
    fake_gemini.slow_stream(0.4)
    press_on(page, answer.get_by_role("button", name="Regenerate"))
    answer.get_by_text("Version 2 of 2").wait_for()
    # While it streams, every action waits.
    page.locator('article.message-assistant[aria-busy="true"]').wait_for()
    assert page.locator("article.message-user").get_by_role("button", name="Edit").is_disabled()
    assert answer.get_by_role("button", name="Regenerate").is_disabled()
    assert answer.get_by_role("button", name="Previous version").is_disabled()
    finished(page)
    assert not answer.get_by_role("button", name="Regenerate").is_disabled()
    rows = rows_of(e2e_db, username)
    assert len(rows) == 2 and len({r["request_id"] for r in rows}) == 2
    assert [r["prompt_tokens"] for r in rows] == [41, 43]
    first, second = [m for m in versions_of(e2e_db, username) if m["role"] == "assistant"]
    assert first["superseded_at"] is not None and second["superseded_at"] is None
    assert answer.count() == 1 and answer.locator(":scope > .bubble-content").inner_text() == "Second answer, shorter."
    cost_2 = Decimal(str(second["cost"]))
    shown = answer.locator(":scope > .badges")
    assert shown.locator("[data-badge='output']").inner_text() == "4 tokens out"
    assert shown.locator("[data-badge='cost'] .money").inner_text() == f"${money_short(cost_2)}"
    question = page.locator("article.message-user")
    assert question.locator("[data-badge='input']").inner_text() == "84 tokens in"  # both sends counted
    assert question.locator("[data-badge='sends']").inner_text() == "over 2 sends"

    # The switcher, by keyboard: Tab from Regenerate reaches "Previous version" (next is disabled).
    answer.get_by_role("button", name="Regenerate").focus()
    tab_to(page, "Previous version")
    page.keyboard.press("Enter")
    answer.get_by_text("Version 1 of 2").wait_for()
    earlier = answer.locator(".answer-version").first
    assert earlier.is_visible() and not answer.locator(":scope > .bubble-content").is_visible()
    assert "First answer about tides." in earlier.locator(".bubble-content").inner_text()
    cost_1 = Decimal(str(first["cost"]))
    assert earlier.locator("[data-badge='output']").inner_text() == "7 tokens out"
    assert earlier.locator("[data-badge='cost'] .money").inner_text() == f"${money_short(cost_1)}"
    # Copy copies the version shown.
    press_on(page, answer.get_by_role("button", name="Copy"))
    page.wait_for_function("() => navigator.clipboard.readText().then((t) => t.startsWith('First'))", polling=100)
    shoot(page, f"message-versions-{width}")
    tab_to(page, "Next version")
    page.keyboard.press("Space")
    answer.get_by_text("Version 2 of 2").wait_for()
    assert answer.locator(":scope > .bubble-content").is_visible()
    # The conversation's totals count both versions.
    conversation = e2e_db.rows("SELECT c.input_tokens, c.estimated_cost FROM chat_conversation c JOIN accounts_user u"
                               " ON u.id = c.owner_id WHERE u.username = %s", username)[0]
    assert conversation["input_tokens"] == 84 and Decimal(str(conversation["estimated_cost"])) == cost_1 + cost_2

    # After a reload: the same versions and figures.
    page.reload()
    answer = page.locator("article.message-assistant")
    assert answer.count() == 1
    answer.get_by_text("Version 2 of 2").wait_for()
    press_on(page, answer.get_by_role("button", name="Previous version"))
    answer.get_by_text("Version 1 of 2").wait_for()
    assert answer.locator(".answer-version").first.locator("[data-badge='cost'] .money").inner_text() == \
        f"${money_short(cost_1)}"
    assert page.locator("article.message-user [data-badge='sends']").inner_text() == "over 2 sends"

    # Edit and resend, by keyboard; Escape cancels first.
    question = page.locator("article.message-user")
    press_on(page, question.get_by_role("button", name="Edit"))
    editor = question.get_by_label("Edit your message")
    assert page.evaluate("(el) => document.activeElement === el", editor.element_handle())
    assert editor.input_value() == "Why are there tides?"
    page.keyboard.press("Escape")
    assert question.get_by_label("Edit your message").count() == 0
    assert page.evaluate("() => document.activeElement.textContent") == "Edit"
    page.keyboard.press("Enter")
    editor = question.get_by_label("Edit your message")
    editor.press("Control+a")
    page.keyboard.type("Why are there two tides a day?")
    shoot(page, f"message-editing-{width}")
    fake_gemini.script(THIRD, usage={"prompt": 45, "candidates": 5})
    tab_to(page, "Save and send")
    page.keyboard.press("Enter")
    finished(page)
    page.locator("article.message-user .edited-flag").wait_for()
    _edited_checks(page, e2e_db, username, cost_1 + cost_2)
    shoot(page, f"message-edited-{width}")
    page.reload()
    _edited_checks(page, e2e_db, username, cost_1 + cost_2)
    page.emulate_media(color_scheme="dark")
    shoot(page, f"message-edited-dark-{width}")


def _edited_checks(page, e2e_db, username: str, replaced_cost: Decimal) -> None:
    users = page.locator("article.message-user")
    answers = page.locator("article.message-assistant")
    assert users.count() == 1 and answers.count() == 1  # superseded messages leave the main line
    user = users.first
    assert user.locator(":scope > .bubble-content").inner_text() == "Why are there two tides a day?"
    assert user.locator(".edited-flag").inner_text() == "edited"
    assert "An answer to the edited question." in answers.first.locator(":scope > .bubble-content").inner_text()
    assert answers.first.locator(".version-switcher").is_hidden()
    summary = user.locator("summary")
    assert summary.inner_text() == "Earlier version"
    if not user.locator(".earlier-text").is_visible():
        press_on(page, summary)  # a <details> opens with the keyboard
    assert user.locator(".earlier-text").inner_text() == "Why are there tides?"
    assert user.locator(".earlier-cost").inner_text() == (
        f"Its 2 answers cost ${money_short(replaced_cost)} (95 tokens), still counted in the totals.")
    rows = rows_of(e2e_db, username)
    assert len(rows) == 3 and len({r["request_id"] for r in rows}) == 3
    conversation = e2e_db.rows("SELECT c.input_tokens FROM chat_conversation c JOIN accounts_user u"
                               " ON u.id = c.owner_id WHERE u.username = %s", username)[0]
    assert conversation["input_tokens"] == 41 + 43 + 45
    assert [m["role"] for m in messages_of(e2e_db, username)] == ["user", "assistant", "assistant", "user", "assistant"]


def test_a_stopped_regeneration_is_a_version_that_stays_counted(page, e2e_db, fake_gemini, shoot):
    username = sign_up(page, "stopper")
    page.select_option("#model-select", MODEL)
    fake_gemini.script(FIRST, usage={"prompt": 41, "candidates": 7})
    page.fill("#message-input", "Why are there tides?")
    page.keyboard.press("Enter")
    finished(page)
    answer = page.locator("article.message-assistant")
    fake_gemini.script([f"Slow word {i}. " for i in range(40)], usage={"prompt": 43, "candidates": 40})
    fake_gemini.slow_stream(0.2)
    answer.get_by_role("button", name="Regenerate").click()
    answer.locator(":scope > .bubble-content").filter(has_text="Slow word").wait_for()
    page.get_by_role("button", name="Stop").click()
    finished(page)
    answer.locator(":scope > .badges [data-badge='status']").filter(has_text="stopped").wait_for()
    assert answer.get_by_text("Version 2 of 2").is_visible()
    rows = rows_of(e2e_db, username)
    assert [r["status"] for r in rows] == ["success", "cancelled"] and rows[1]["completion_tokens"] > 0
    question = page.locator("article.message-user")
    page.wait_for_function("() => document.querySelector('article.message-user [data-badge=\"sends\"]')")
    assert question.locator("[data-badge='sends']").inner_text() == "over 2 sends"
    shoot(page, "message-regeneration-stopped")
    page.reload()
    answer = page.locator("article.message-assistant")
    assert answer.get_by_text("Version 2 of 2").is_visible()
    assert "Slow word 0." in answer.locator(":scope > .bubble-content").inner_text()
    stored = [m for m in versions_of(e2e_db, username) if m["role"] == "user"][0]
    assert stored["prompt_tokens"] == 41 + rows[1]["prompt_tokens"]
    # A cut stream is charged an estimate, so the question's sum is marked as one.
    shown = page.locator("article.message-user [data-badge='input']")
    assert shown.get_attribute("data-tokens") == str(stored["prompt_tokens"])
    assert shown.get_attribute("data-state") == "estimate" and "≈" in shown.inner_text()
