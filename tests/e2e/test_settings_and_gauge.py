"""Conversation settings, the context gauge and three small fixes, in a real browser (issue 15).

* "Conversation settings" set by keyboard: kept on the page in a new chat and sent with the first
  message, saved with PATCH in a conversation ("Saved" announced, a bad value shown by its field),
  still there after a reload, and what the fake provider (tests/fakes, the real OpenAI SDK) was asked.
* The gauge under the message box agrees with POST /draft-estimate/ and with stream_start; a model
  no source prices says "price unknown" and one with no context window "context window unknown".
* Search as you type, the sidebar's preview after an answer, the dashboard at 390 px.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chatlima.formats import money_display
from tests.e2e.conftest import ROOT, _server_env
from tests.e2e.test_browser import sign_up

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o-mini"  # served by the fake OpenAI server; priced ($0.15 per million input tokens), 128,000 window
UNPRICED = "acme-unpriced-7b"


def wait_server_estimate(page) -> None:
    page.wait_for_function("() => document.getElementById('next-estimate').dataset.source === 'server'")


def count(text: str) -> int:
    return int(text.replace(",", ""))


def draft_estimate(page, body: dict) -> dict:
    """POST /draft-estimate/ as the page does (session and CSRF)."""
    return page.evaluate(
        """async (body) => {
          const data = JSON.parse(document.getElementById('chat-data').textContent);
          const response = await fetch(data.estimate_url, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRFToken': data.csrf_token}, body: JSON.stringify(body)});
          return response.json();
        }""", body)


def gauge(page) -> dict:
    cost = page.locator("#next-estimate-cost")
    return {
        "tokens": count(page.text_content("#next-estimate-tokens")),
        "history": count(page.text_content("#next-estimate-history")),
        "context": page.text_content("#context-text"),
        "price": page.text_content("#next-estimate-price"),
        "exact": cost.get_attribute("data-exact") if cost.count() else None,
    }


def percent(tokens: int, window: int) -> str:
    share = 100 * tokens / window
    return "under 1%" if 0 < share < 0.5 else f"{round(share)}%"


def wait_reply(page, answers: int) -> None:
    """Until the page shows `answers` answers (stored ones included), the last one finished."""
    page.wait_for_function(
        "(n) => { const all = document.querySelectorAll('article.message-assistant');"
        " return all.length === n && all[n - 1].getAttribute('aria-busy') !== 'true'"
        " && !!all[n - 1].getAttribute('data-message-id') && !document.getElementById('send-button').disabled; }",
        arg=answers, timeout=20_000)


def open_settings(page) -> None:
    """Open "Conversation settings" by keyboard (Enter on its summary), unless it is open."""
    if page.get_attribute("#conv-settings", "open") is not None:
        return
    summary = page.locator("#conv-settings summary")
    summary.focus()
    page.keyboard.press("Enter")
    assert page.get_attribute("#conv-settings", "open") is not None
    assert page.get_by_label("System prompt").is_visible()


def conversation_row(e2e_db, username: str) -> dict:
    return e2e_db.rows(
        "SELECT c.public_id, c.model, c.system_prompt, c.temperature, c.max_tokens, c.last_message_preview "
        "FROM chat_conversation c JOIN accounts_user u ON u.id = c.owner_id WHERE u.username = %s "
        "ORDER BY c.id DESC", username)[0]


def usage_metadata(e2e_db, username: str) -> dict:
    row = e2e_db.rows("SELECT l.metadata FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id "
                      "WHERE u.username = %s ORDER BY l.id DESC", username)[0]
    return row["metadata"] if isinstance(row["metadata"], dict) else json.loads(row["metadata"])


def sent_max_tokens(body: dict) -> int:
    return body.get("max_tokens", body.get("max_completion_tokens"))


def system_message(body: dict) -> str | None:
    first = body["messages"][0]
    return first["content"] if first["role"] == "system" else None


def test_settings_by_keyboard_reach_the_provider_and_stay_after_a_reload(browser, server_url, e2e_db, fake_openai, shoot):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    frames: list[dict] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: frames.append(json.loads(frame))))
    try:
        username = sign_up(page, "settler")
        page.select_option("#model-select", MODEL)
        # A new chat: the settings stay on the page and go with the first message.
        open_settings(page)
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "setting-system-prompt"
        page.keyboard.type("Answer as a ship's captain.")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "setting-temperature"
        page.keyboard.type("3")
        page.keyboard.press("Enter")  # submits: a bad value is shown by its field, nothing kept
        error = page.locator("#setting-temperature-error")
        error.wait_for()
        assert error.inner_text() == "Temperature must be a number from 0 to 2."
        assert page.get_by_label("Temperature").get_attribute("aria-invalid") == "true"
        shoot(page, "settings-error")
        page.keyboard.press("Backspace")
        page.keyboard.type("0.4")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "setting-max-tokens"
        page.keyboard.type("300")
        page.keyboard.press("Tab")
        page.keyboard.press("Space")  # the button
        page.wait_for_function("() => document.getElementById('settings-status').textContent.startsWith('Kept')")
        assert error.is_hidden()

        # The gauge counts the page's system prompt, as the server does for that draft.
        draft = "Where do we sail tomorrow?"
        page.get_by_label("Message", exact=True).focus()
        page.keyboard.type(draft)
        wait_server_estimate(page)
        shown = gauge(page)
        asked = draft_estimate(page, {"message": draft, "model": MODEL, "system_prompt": "Answer as a ship's captain."})
        without_prompt = draft_estimate(page, {"message": draft, "model": MODEL})
        assert asked["estimated_prompt_tokens"] > without_prompt["estimated_prompt_tokens"]
        assert (shown["tokens"], shown["history"]) == (asked["estimated_prompt_tokens"], asked["base_prompt_tokens"])
        window = asked["context_window"]
        assert window == 128_000
        tokens = asked["estimated_prompt_tokens"]
        assert shown["context"] == f"Context: {tokens:,} of {window:,} tokens ({percent(tokens, window)})"
        assert shown["exact"] == money_display(asked["estimated_cost"]) and shown["price"].startswith("about $")
        assert page.get_attribute("#context-meter", "max") == str(window)
        assert page.get_attribute("#context-meter", "value") == str(tokens)
        shoot(page, "settings-new-chat-1280")

        page.get_by_label("Message", exact=True).focus()
        page.keyboard.press("Enter")
        wait_reply(page, 1)
        start = next(f for f in frames if f.get("type") == "stream_start")
        assert start["estimated_prompt_tokens"] == tokens == shown["tokens"]
        sent = fake_openai.last_request().body
        assert (sent["temperature"], sent_max_tokens(sent), system_message(sent)) == (0.4, 300, "Answer as a ship's captain.")
        assert usage_metadata(e2e_db, username)["max_tokens"] == 300
        stored = conversation_row(e2e_db, username)
        assert (stored["system_prompt"], stored["temperature"], stored["max_tokens"]) == ("Answer as a ship's captain.", 0.4, 300)

        # The sidebar's preview is the answer, not the question, now and after a reload.
        answer_text = page.locator("article.message-assistant .bubble-content").last.inner_text()
        preview = page.locator("#conversation-list a[aria-current='page'] .conv-preview")
        assert preview.inner_text().startswith("Counted word 0.") and answer_text.startswith("Counted word 0.")
        page.reload()
        assert preview.inner_text().startswith("Counted word 0.")
        assert stored["last_message_preview"].startswith("Counted word 0.")

        # After a reload the settings are the conversation's; change one by keyboard and save.
        open_settings(page)
        assert page.get_by_label("System prompt").input_value() == "Answer as a ship's captain."
        assert page.get_by_label("Temperature").input_value() == "0.4"
        assert page.get_by_label("Max output tokens").input_value() == "300"
        page.get_by_label("Temperature").focus()
        page.keyboard.press("Control+A")
        page.keyboard.type("1.2")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.getElementById('settings-status').textContent === 'Saved'")
        assert conversation_row(e2e_db, username)["temperature"] == 1.2
        shoot(page, "settings-saved-1280")
        page.reload()
        open_settings(page)
        assert page.get_by_label("Temperature").input_value() == "1.2"

        # The next message uses the saved settings; the gauge agrees with the server before and after.
        page.get_by_label("Message", exact=True).focus()
        page.keyboard.type("And the day after?")
        wait_server_estimate(page)
        shown = gauge(page)
        conv_id = stored["public_id"]
        asked = draft_estimate(page, {"message": "And the day after?", "model": MODEL, "conversation_id": conv_id})
        assert (shown["tokens"], shown["history"]) == (asked["estimated_prompt_tokens"], asked["base_prompt_tokens"])
        assert asked["history_messages"] == 2 and asked["older_messages_left_out"] == 0
        page.keyboard.press("Enter")
        wait_reply(page, 2)
        starts = [f for f in frames if f.get("type") == "stream_start"]
        assert starts[-1]["estimated_prompt_tokens"] == shown["tokens"]
        sent = fake_openai.last_request().body
        assert (sent["temperature"], sent_max_tokens(sent), system_message(sent)) == (1.2, 300, "Answer as a ship's captain.")

        # A value the server refuses (more than the box lets one type) is shown by its field; nothing changes.
        open_settings(page)
        page.evaluate("() => { document.getElementById('setting-system-prompt').value = 'x'.repeat(32001); }")
        page.get_by_role("button", name="Save settings").focus()
        page.keyboard.press("Enter")
        refusal = page.locator("#setting-system-prompt-error")
        refusal.wait_for()
        assert "32000" in refusal.inner_text() or "32,000" in refusal.inner_text()
        assert page.get_by_label("System prompt").get_attribute("aria-invalid") == "true"
        # The status is written 50 ms after it is cleared (so a repeated one is read again): wait for it.
        page.wait_for_function("() => document.getElementById('settings-status').textContent.startsWith('Not saved')")
        assert conversation_row(e2e_db, username)["system_prompt"] == "Answer as a ship's captain."
        shoot(page, "settings-refused-1280")
        page.reload()

        # The composer's model select is the conversation's model: a change is saved.
        page.select_option("#model-select", "offline-demo")
        page.wait_for_function("() => document.getElementById('chat-status').textContent.startsWith('Model saved')")
        assert conversation_row(e2e_db, username)["model"] == "offline-demo"
        page.reload()
        assert page.input_value("#model-select") == "offline-demo"

        page.set_viewport_size({"width": 390, "height": 844})
        open_settings(page)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        shoot(page, "settings-open-390")
        page.emulate_media(color_scheme="dark")
        page.get_by_label("Message", exact=True).focus()
        page.keyboard.type("Dark seas?")
        wait_server_estimate(page)
        assert page.get_by_role("meter").is_visible()
        shoot(page, "settings-open-390-dark")
        page.set_viewport_size({"width": 1280, "height": 900})
        shoot(page, "settings-open-1280-dark")
    finally:
        context.close()


def test_an_unpriced_model_says_price_unknown_and_window_unknown(browser, server_url, e2e_db, shoot):
    e2e_db.execute(
        "INSERT INTO usage_catalogueentry (provider, model_id, display_name, context_window, listed, first_seen_at, last_seen_at) "
        "VALUES ('openai', %s, 'Acme Unpriced 7B', NULL, %s, '2026-11-01 00:00:00', NULL)",
        UNPRICED, True)
    for width in (1280, 390):
        context = browser.new_context(viewport={"width": width, "height": 860}, base_url=server_url)
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            sign_up(page, f"unpriced{width}")
            page.select_option("#model-select", UNPRICED)
            # The page's own figure (before the server answers) already says so, and then the server's.
            assert page.text_content("#next-estimate-price") == "price unknown"
            page.get_by_label("Message", exact=True).focus()
            page.keyboard.type("What does this cost?")
            wait_server_estimate(page)
            shown = gauge(page)
            asked = draft_estimate(page, {"message": "What does this cost?", "model": UNPRICED})
            assert asked["estimated_cost"] is None and asked["context_window"] is None
            assert shown["price"] == "price unknown" and "$0.00" not in page.inner_text("#next-estimate")
            assert shown["context"] == f"Context: {asked['estimated_prompt_tokens']:,} tokens; context window unknown"
            assert page.locator("#context-meter").is_hidden()
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width
            shoot(page, f"gauge-unpriced-{width}")
        finally:
            context.close()


def test_search_as_you_type_updates_the_list_and_the_url_without_a_reload(page, shoot):
    sign_up(page, "seeker")
    for title in ("Kyoto trains", "Garden ideas", "Kyoto food"):
        created = page.evaluate(
            """async (title) => {
              const data = JSON.parse(document.getElementById('chat-data').textContent);
              const response = await fetch('/api/v1/conversations', {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', 'X-CSRFToken': data.csrf_token}, body: JSON.stringify({title})});
              return response.status;
            }""", title)
        assert created == 201
    page.reload()
    titles = page.locator("#conversation-list .conv-title")
    assert titles.all_inner_texts() == ["Kyoto food", "Garden ideas", "Kyoto trains"]
    page.evaluate("() => { window.notReloaded = true; }")
    search = page.get_by_role("searchbox", name="Search conversations")
    search.focus()
    page.keyboard.type("kyoto")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list .conv-title').length === 2")
    assert titles.all_inner_texts() == ["Kyoto food", "Kyoto trains"]
    page.wait_for_function("() => window.location.search === '?q=kyoto'")
    assert page.evaluate("() => window.notReloaded") is True
    assert "2 found for “kyoto”" in page.inner_text("#search-summary")
    page.wait_for_function("() => document.getElementById('chat-status').textContent === '2 conversations found.'")
    shoot(page, "search-as-you-type")
    page.keyboard.type(" trains")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list .conv-title').length === 1")
    assert titles.all_inner_texts() == ["Kyoto trains"]
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list .conv-title').length === 3")
    page.wait_for_function("() => window.location.search === ''")
    assert page.locator("#search-summary").count() == 0
    assert page.evaluate("() => window.notReloaded") is True
    # The entries' own buttons still work on a list the search put in place.
    page.keyboard.type("garden")
    page.wait_for_function("() => document.querySelectorAll('#conversation-list .conv-title').length === 1")
    page.locator("#conversation-list li").first.get_by_role("button", name="Rename").click()
    assert page.get_by_role("dialog", name="Rename conversation").is_visible()
    page.keyboard.press("Escape")
    # Without the script the Search button submits the form: it is still there.
    assert page.get_by_role("button", name="Search").is_visible()


def test_the_dashboard_fits_a_phone_without_sideways_scrolling(browser, server_url, e2e_db, shoot):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_up(page, "phoner")
        for i in range(2):
            page.get_by_label("Message", exact=True).fill(f"Question number {i}")
            page.keyboard.press("Enter")
            wait_reply(page, i + 1)
        subprocess.run([sys.executable, "manage.py", "rollup_usage"], cwd=ROOT, env=_server_env(e2e_db.url),
                       check=True, capture_output=True)
        page.goto("/usage/")
        assert page.locator("#daily-chart").is_visible() and page.locator("#daily-chart-narrow").is_hidden()
        shoot(page, "dashboard-1280")
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/usage/")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        chart = page.locator("#daily-chart-narrow")
        assert chart.is_visible() and page.locator("#daily-chart").is_hidden()
        assert page.evaluate("() => { const w = document.querySelector('.chart-wrap');"
                             " return w.scrollWidth <= w.clientWidth; }")
        box = chart.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert page.get_by_role("img", name="Daily tokens and cost").first.is_visible()
        shoot(page, "dashboard-390")
    finally:
        context.close()
