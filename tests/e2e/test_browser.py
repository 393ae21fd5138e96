"""The chat in a real browser: sign up, chat with the offline model, watch the figures, stop, read usage."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from decimal import Decimal

import pytest

from chat.markdown import plain_text
from chat.providers.base import ChatRequest, estimate_prompt_tokens
from chatlima.formats import money_display, money_exact, money_short
from tests.e2e.conftest import MIN_OUTPUT_TOKENS, ROOT, _server_env
from usage.tokens import count_tokens

pytestmark = pytest.mark.e2e

_names = itertools.count()


def sign_up(page, prefix: str) -> str:
    username = f"{prefix}{next(_names)}"
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", "a-long-browser-password-1")
    page.fill("#id_password2", "a-long-browser-password-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    page.wait_for_function("() => document.getElementById('next-estimate-tokens').textContent !== '0'")
    return username


def messages_of(e2e_db, username: str) -> list[dict]:
    return e2e_db.rows(
        "SELECT m.public_id, m.role, m.status, m.content, m.prompt_tokens, m.completion_tokens, "
        "m.reasoning_tokens, m.cost, m.figures_source FROM chat_message m "
        "JOIN accounts_user u ON u.id = m.owner_id WHERE u.username = %s ORDER BY m.timestamp, m.id",
        username,
    )


def badge(page, message_id: str, kind: str):
    return page.locator(f'article[data-message-id="{message_id}"] [data-badge="{kind}"]')


def test_signed_up_user_chats_and_sees_live_figures_turn_into_stored_ones(page, e2e_db, shoot):
    username = sign_up(page, "chatter")
    # Before sending: the estimate counts the draft as it is typed, the server's figure once it answers.
    page.focus("#message-input")
    page.keyboard.type("How are tokens counted")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("and what does it cost?")
    draft = "How are tokens counted\nand what does it cost?"
    assert page.input_value("#message-input") == draft
    expected = estimate_prompt_tokens(ChatRequest(model="offline-demo", message=draft))
    page.wait_for_function(f"() => Number(document.getElementById('next-estimate-tokens').textContent) === {expected}"
                           " && document.getElementById('next-estimate').dataset.source === 'server'")

    page.keyboard.press("Enter")  # keyboard only: Enter sends
    streaming = page.locator('article.message-assistant[aria-busy="true"] [data-badge="output"][data-state="streaming"]')
    streaming.wait_for()
    assert "in →" in streaming.text_content() and "≈" in streaming.text_content()
    assert "estimate" in streaming.inner_html()
    page.wait_for_function(
        "() => document.getElementById('chat-status').textContent.includes('Reply started')"
        " || document.getElementById('chat-status').textContent.includes('Reply finished')"
    )
    assistant = page.locator('article.message-assistant[aria-busy="false"]')
    assistant.wait_for(timeout=20_000)
    page.wait_for_function("() => document.getElementById('chat-status').textContent.includes('Reply finished')")

    stored = messages_of(e2e_db, username)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    user_row, answer_row = stored
    assert answer_row["status"] == "complete" and answer_row["completion_tokens"] > 0
    assert page.url.rstrip("/").split("/")[-2:-1] == ["c"]

    def check_figures() -> None:
        user_badge = badge(page, user_row["public_id"], "input")
        assert user_badge.get_attribute("data-tokens") == str(user_row["prompt_tokens"])
        assert f"{user_row['prompt_tokens']} tokens in" in user_badge.text_content()
        out = badge(page, answer_row["public_id"], "output")
        assert out.get_attribute("data-tokens") == str(answer_row["completion_tokens"])
        assert out.get_attribute("data-state") == ("estimate" if answer_row["figures_source"] == "estimate" else "billed")
        cost = badge(page, answer_row["public_id"], "cost")
        assert cost.get_attribute("data-cost") == money_display(Decimal(str(answer_row["cost"])))
        summary = page.locator("#conv-summary")
        assert summary.locator('[data-usage="input_tokens"]').text_content() == f"{user_row['prompt_tokens']:,}"
        assert summary.locator('[data-usage="output_tokens"]').text_content() == f"{answer_row['completion_tokens']:,}"
        assert summary.locator('[data-usage="message_count"]').text_content() == "2"
        # The markdown was swapped in from the server's safe HTML.
        assert page.locator(f'article[data-message-id="{answer_row["public_id"]}"] .bubble-content strong').count() > 0

    check_figures()
    title = e2e_db.rows("SELECT title FROM chat_conversation WHERE public_id = %s",
                        page.url.rstrip("/").split("/")[-1])[0]["title"]
    assert page.text_content("#chat-title") == title == "How are tokens counted"
    assert page.text_content('#conversation-list a[aria-current="page"] .conv-title') == title
    assert page.locator("#account-output").text_content() == f"{answer_row['completion_tokens']:,}"
    shoot(page, "chat")
    page.reload()
    check_figures()


def test_stopping_mid_stream_keeps_the_partial_answer(page, e2e_db, shoot):
    username = sign_up(page, "stopper")
    # The offline model quotes the question back, so a long question makes a long, slow answer.
    page.fill("#message-input", " ".join(f"word{i}" for i in range(400)))
    page.click("#send-button")
    page.wait_for_function(
        "() => { const b = document.querySelector('article.message-assistant .bubble-content');"
        " return b && b.textContent.length > 40; }"
    )
    page.click("#stop-button")
    page.locator('article.message-assistant [data-badge="status"]').wait_for()
    assert "stopped" in page.text_content("#chat-status") + page.text_content("#chat-error").lower()
    shown = page.text_content("article.message-assistant .bubble-content")

    stored = messages_of(e2e_db, username)
    answer = next(m for m in stored if m["role"] == "assistant")
    assert answer["status"] == "cancelled"
    # The bubble shows the stored text as markdown: its words, without the markdown signs.
    assert answer["content"] and plain_text(answer["content"]).startswith(" ".join(shown.split())[:40])
    assert len(answer["content"]) < 2000  # stopped well before the end of the ~400-word answer
    usage = e2e_db.rows("SELECT status FROM api_usage_logs WHERE request_id = %s", answer and stored[0]["public_id"])
    assert [row["status"] for row in usage] == ["cancelled"]

    # Without a reload, the stopped exchange's stored figures replace the live estimate on both bubbles.
    user_badge = page.locator(f'article[data-message-id="{stored[0]["public_id"]}"] [data-badge="input"]')
    page.wait_for_function(
        f"() => document.querySelector('article[data-message-id=\"{stored[0]['public_id']}\"] [data-badge=input]')"
        ".getAttribute('data-state') !== 'pending'"
    )
    assert user_badge.get_attribute("data-tokens") == str(stored[0]["prompt_tokens"])
    live = page.locator(f'article[data-message-id="{answer["public_id"]}"]')
    assert live.locator('[data-badge="output"]').get_attribute("data-tokens") == str(answer["completion_tokens"])
    assert live.locator('[data-badge="status"]').text_content() == "stopped"
    shoot(page, "chat-stopped")

    page.reload()
    article = page.locator(f'article[data-message-id="{answer["public_id"]}"]')
    assert answer["content"].split()[0] in article.text_content()
    assert article.locator('[data-badge="status"]').text_content() == "stopped"
    assert article.locator('[data-badge="output"]').get_attribute("data-tokens") == str(answer["completion_tokens"])


def test_dashboard_renders_the_users_usage(page, e2e_db, server_url, shoot):
    username = sign_up(page, "viewer")
    page.fill("#message-input", "What does a token cost?")
    page.click("#send-button")
    page.locator('article.message-assistant[aria-busy="false"]').wait_for(timeout=20_000)
    subprocess.run([sys.executable, "manage.py", "rollup_usage"], cwd=ROOT, env=_server_env(e2e_db.url),
                   check=True, capture_output=True)
    logs = e2e_db.rows(
        "SELECT l.total_tokens FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id WHERE u.username = %s",
        username,
    )
    page.goto("/usage/")
    assert page.locator('[data-total="requests"]').text_content() == "1"
    assert page.locator('[data-total="total_tokens"]').text_content() == str(logs[0]["total_tokens"])
    assert page.locator("#daily-chart rect.bar").count() == 30  # the wide drawing (#daily-chart-narrow is for phones)
    assert "offline-demo" in page.text_content("#models-table")
    export = page.locator("a", has_text="Export CSV").get_attribute("href")
    response = page.request.get(server_url + export)
    assert response.status == 200 and "offline-demo" in response.text()
    shoot(page, "dashboard")


def test_phone_width_collapses_the_sidebar(browser, server_url, shoot):
    context = browser.new_context(viewport={"width": 390, "height": 800}, base_url=server_url)
    page = context.new_page()
    try:
        sign_up(page, "phone")
        assert not page.locator("#sidebar").is_visible()
        page.click("#sidebar-toggle")
        assert page.locator("#sidebar").is_visible()
        assert page.get_attribute("#sidebar-toggle", "aria-expanded") == "true"
        page.click("#sidebar-toggle")
        assert page.locator("#message-input").is_visible()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390  # nothing forces sideways scrolling
        shoot(page, "chat-phone")
    finally:
        context.close()


def set_token_limit(e2e_db, username: str, tokens: int) -> None:
    e2e_db.execute(
        "UPDATE accounts_budget SET token_limit = %s WHERE user_id = (SELECT id FROM accounts_user WHERE username = %s)",
        tokens, username,
    )


def test_budget_refusal_says_what_is_left_and_what_to_do(browser, server_url, e2e_db, shoot):
    draft = "Too big for my budget"
    needed = estimate_prompt_tokens(ChatRequest(model="offline-demo", message=draft)) + MIN_OUTPUT_TOKENS
    for width in (1280, 390):
        context = browser.new_context(viewport={"width": width, "height": 860}, base_url=server_url)
        page = context.new_page()
        try:
            username = sign_up(page, "thrifty")
            set_token_limit(e2e_db, username, needed - 1)
            page.reload()  # the sidebar shows the new limit
            page.fill("#message-input", draft)
            page.keyboard.press("Escape")  # nothing to stop yet: must not break anything
            page.focus("#message-input")
            page.keyboard.press("Enter")
            error = page.locator("#chat-error")
            error.wait_for()
            text = error.text_content()
            assert f"your budget has {needed - 1} tokens left this month" in text
            assert f"needs at least {needed}" in text and f"{MIN_OUTPUT_TOKENS} for the answer" in text
            assert "Wait for it to reset on" in text and "ask an administrator to raise your limit" in text
            assert error.locator("a").get_attribute("href") == "/usage/#budget-title"
            assert page.locator('article.message-user [data-badge="status"]').text_content() == "not sent"
            assert page.input_value("#message-input") == draft  # given back to edit, its estimate with it
            page.wait_for_function(f"() => document.getElementById('next-estimate-tokens').textContent === '{needed - MIN_OUTPUT_TOKENS}'")
            assert not page.is_disabled("#send-button") and page.is_disabled("#stop-button")
            assert messages_of(e2e_db, username) == []
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width
            shoot(page, f"chat-budget-refused-{width}")
        finally:
            context.close()


def test_an_answer_the_budget_lowered_says_so(browser, server_url, e2e_db, shoot):
    draft = "Tell me everything about budgets and tokens"
    prompt = estimate_prompt_tokens(ChatRequest(model="offline-demo", message=draft))
    allowed = MIN_OUTPUT_TOKENS + 36  # the offline answer is longer: it stops at the allowance
    for width in (1280, 390):
        context = browser.new_context(viewport={"width": width, "height": 860}, base_url=server_url)
        page = context.new_page()
        try:
            username = sign_up(page, "clamped")
            set_token_limit(e2e_db, username, prompt + allowed)
            page.reload()  # the sidebar shows the new limit
            page.fill("#message-input", draft)
            page.keyboard.press("Enter")
            note = page.locator('article.message-assistant [data-note="max-tokens-clamped"]')
            note.wait_for()
            assert note.text_content() == f"Answer limited to {allowed} tokens by your budget."
            page.locator('article.message-assistant[aria-busy="false"]').wait_for(timeout=20_000)
            assert note.is_visible()  # the stored figures replace the badges, not the note
            _, answer = messages_of(e2e_db, username)
            assert answer["status"] == "complete" and 0 < answer["completion_tokens"] <= allowed
            [row] = e2e_db.rows("SELECT metadata FROM api_usage_logs WHERE message_id = "
                                "(SELECT id FROM chat_message WHERE public_id = %s)", answer["public_id"])
            metadata = row["metadata"] if isinstance(row["metadata"], dict) else json.loads(row["metadata"])
            assert (metadata["max_tokens"], metadata["max_tokens_clamped"]) == (allowed, True)
            assert page.locator("#chat-error").is_hidden()
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width
            shoot(page, f"chat-budget-clamped-{width}")
        finally:
            context.close()


CORPUS = [
    "How many international airports are there in Japan?",
    "def parse(value):\n    return json.loads(value)  # camelCase getElementById",
    "Order 1234567 shipped on 2025-07-22 for $1,299.99!!!",
    "Köln, Zürich, naïve café — déjà vu",
    "Привет, как дела? Ελληνικά κείμενα",
    "日本には国際空港がいくつありますか？ 한국어 텍스트",
    "Emoji 👍🏽 and ❤️ and 👨‍👩‍👧 family ✨",
    "\n\n  indented\n    more\n\n\tTabs",
    "x" * 500,
    "",
]


def test_draft_counter_in_the_page_matches_the_servers(page):
    sign_up(page, "counter")
    counted = page.evaluate("(texts) => texts.map((t) => window.chatlimaCountTokens(t))", CORPUS)
    server = [count_tokens(text, "offline-demo") for text in CORPUS]
    # The port follows usage/tokens.py step by step; a step added there later shows up here as drift.
    # A draft estimate a token or 10% off is still a fair estimate, so only drift past that fails.
    far = [(text[:30], js, py) for text, js, py in zip(CORPUS, counted, server, strict=True)
           if abs(js - py) > max(1, py // 10)]
    assert far == []
    assert counted[-1] == server[-1] == 0


def test_refusals_before_sending_are_explained(page, e2e_db):
    username = sign_up(page, "refused")
    # Only spaces: refused in the page, nothing sent.
    page.fill("#message-input", "   ")
    page.keyboard.press("Enter")
    assert "empty, only spaces" in page.locator("#chat-error").text_content()
    # A model whose provider has no key on this server: the server refuses, the page says what to do.
    unavailable = page.locator("#model-select option[disabled]").first
    model_id = unavailable.get_attribute("value")
    page.evaluate(
        "(id) => { const o = document.querySelector(`#model-select option[value='${id}']`);"
        " o.disabled = false; document.getElementById('model-select').value = id; }",
        model_id,
    )
    page.fill("#message-input", "Hello?")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('chat-error').textContent.includes('not available')")
    assert "Pick another model" in page.text_content("#chat-error")
    assert page.locator('article.message-user [data-badge="status"]').text_content() == "not sent"
    assert messages_of(e2e_db, username) == []


def test_provider_figures_replace_the_estimate_as_billed_ones(page, e2e_db, fake_gemini, shoot):
    username = sign_up(page, "billed")
    fake_gemini.slow_stream(0.03)
    page.select_option("#model-select", "gemini-2.5-flash")
    page.fill("#message-input", "Count my tokens, Gemini")
    page.keyboard.press("Enter")
    page.locator('article.message-assistant [data-badge="output"][data-state="streaming"]').wait_for()
    page.locator('article.message-assistant[aria-busy="false"]').wait_for(timeout=20_000)

    user_row, answer_row = messages_of(e2e_db, username)
    assert answer_row["figures_source"] == "provider" and answer_row["reasoning_tokens"] == 30
    assert Decimal(str(answer_row["cost"])) > 0
    user_badge = badge(page, user_row["public_id"], "input")
    assert user_badge.get_attribute("data-state") == "billed" and user_badge.get_attribute("data-tokens") == "41"
    assert "≈" not in user_badge.text_content()
    out = badge(page, answer_row["public_id"], "output")
    assert out.get_attribute("data-state") == "billed"
    assert out.get_attribute("data-tokens") == str(answer_row["completion_tokens"])
    assert "estimate" not in out.inner_html()
    assert badge(page, answer_row["public_id"], "reasoning").text_content() == "30 reasoning"
    cost = Decimal(str(answer_row["cost"]))
    shown = badge(page, answer_row["public_id"], "cost").locator(".money")
    assert shown.text_content() == f"${money_short(cost)}" and shown.get_attribute("data-exact") == money_display(cost)
    if money_short(cost) != money_exact(cost):  # the exact figure on hover and keyboard focus
        assert shown.get_attribute("title") == f"exactly ${money_exact(cost)}"
        shown.focus()
        assert page.evaluate("(el) => getComputedStyle(el, '::after').content", shown.element_handle()).strip('"') \
            == f"exactly ${money_exact(cost)}"
    shoot(page, "chat-billed")
    page.reload()
    assert badge(page, answer_row["public_id"], "reasoning").text_content() == "30 reasoning"
    assert badge(page, user_row["public_id"], "input").get_attribute("data-state") == "billed"


def test_a_failed_call_says_failed_not_charged(page, e2e_db, fake_gemini, shoot):
    username = sign_up(page, "unbilled")
    fake_gemini.fail_next(400)  # a client error: not retried, no output, no usage
    page.select_option("#model-select", "gemini-2.5-flash")
    page.fill("#message-input", "This call will fail")
    page.keyboard.press("Enter")
    page.locator("#chat-error:not([hidden])").wait_for()
    user_row, answer_row = messages_of(e2e_db, username)
    assert (answer_row["status"], answer_row["figures_source"], answer_row["completion_tokens"]) == ("error", "none", 0)
    assert user_row["prompt_tokens"] == 0
    flag = page.locator(f'article[data-message-id="{answer_row["public_id"]}"] [data-state="not-charged"]')
    flag.wait_for()
    assert flag.text_content() == "failed, not charged"
    assert page.locator(f'article[data-message-id="{user_row["public_id"]}"] [data-state="not-charged"]').text_content() == "not charged"
    shoot(page, "chat-failed-not-charged")
    page.reload()
    assert page.locator(f'article[data-message-id="{answer_row["public_id"]}"] [data-state="not-charged"]').text_content() == "failed, not charged"
    assert page.locator(f'article[data-message-id="{user_row["public_id"]}"] [data-badge="input"]').count() == 0
    shoot(page, "chat-failed-not-charged-reloaded")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.locator(f'article[data-message-id="{answer_row["public_id"]}"] [data-state="not-charged"]').is_visible()
    shoot(page, "chat-failed-not-charged-phone")
