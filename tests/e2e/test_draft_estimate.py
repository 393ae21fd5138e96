"""The "before sending" estimate in a real browser: the figure the page shows for a typed draft is
the one the server then reports (stream_start.estimated_prompt_tokens, and the user bubble's input
tokens when the estimate is what is charged), for an OpenAI-family model, counted with the BPE
tokenizer, and for the offline model, counted with the calibrated heuristic, history included."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from chat.providers.base import ChatRequest, estimate_prompt_tokens
from tests.e2e.test_browser import messages_of, sign_up
from usage.charts import money_display
from usage.tokens import count_tokens

pytestmark = pytest.mark.e2e

BPE_MODEL = "gpt-4o-mini"  # $0.15 per million input tokens in the seeded price table
# Code, numbers and accented words: where the page's heuristic and cl100k_base part most.
EXCHANGES = [
    (BPE_MODEL, "Refactor these getElementById() calls:\n    const el = document.getElementById('x'); // 42 times?"),
    ("offline-demo", "Köln → Zürich: naïve café, 1,299.99 € — déjà vu ✨"),
    (BPE_MODEL, "Now the same in TypeScript, with querySelectorAll<HTMLInputElement>('#a, .b > c')."),
]


def type_draft(page, text: str) -> None:
    """Type `text` as a user would (Shift+Enter between lines, since Enter sends)."""
    page.focus("#message-input")
    for i, line in enumerate(text.split("\n")):
        if i:
            page.keyboard.press("Shift+Enter")
        page.keyboard.type(line)


def shown_estimate(page) -> int:
    """The figure under the message box once the server has answered for the draft as typed."""
    page.wait_for_function("() => document.getElementById('next-estimate').dataset.source === 'server'")
    return int(page.text_content("#next-estimate-tokens"))


def test_while_the_server_counts_the_page_shows_its_own_figure_marked_as_local(page):
    sign_up(page, "waiting")
    held = []
    page.route("**/draft-estimate/", lambda route: held.append(route))  # answers wait until released below
    page.select_option("#model-select", BPE_MODEL)
    draft = EXCHANGES[0][1]
    type_draft(page, draft)
    deadline = time.monotonic() + 15
    while not any(json.loads(route.request.post_data)["message"] == draft for route in held):
        assert time.monotonic() < deadline, "the page never asked the server about the draft"
        page.wait_for_timeout(20)
    # Asked once the typing paused, not once per keystroke.
    assert len([route for route in held if json.loads(route.request.post_data)["message"]]) < 5 < len(draft)
    local = page.evaluate("(text) => window.chatlimaCountTokens(text)", draft)
    empty = estimate_prompt_tokens(ChatRequest(model=BPE_MODEL, message=""))
    assert int(page.text_content("#next-estimate-tokens")) == empty + local
    assert page.get_attribute("#next-estimate", "data-source") == "local"
    assert page.get_attribute("#next-estimate", "aria-busy") == "true"
    assert "≈" in page.text_content("#next-estimate")
    for route in held:
        route.continue_()
    assert shown_estimate(page) == estimate_prompt_tokens(ChatRequest(model=BPE_MODEL, message=draft)) != empty + local
    assert page.get_attribute("#next-estimate", "aria-busy") == "false"


def test_the_draft_estimate_is_the_figure_the_send_reports(browser, server_url, e2e_db, shoot):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    received: list[dict] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: received.append(json.loads(frame))))
    try:
        username = sign_up(page, "estimator")
        for done, (model, draft) in enumerate(EXCHANGES, start=1):
            page.select_option("#model-select", model)
            type_draft(page, draft)
            assert page.input_value("#message-input") == draft
            shown = shown_estimate(page)
            if model == BPE_MODEL:
                # The page's own count would be off: only the server's tokenizer gives this figure.
                local = page.evaluate("(text) => window.chatlimaCountTokens(text)", draft)
                assert local != count_tokens(draft, model)
                cost = money_display(Decimal(shown) * Decimal("0.15") / 1_000_000)
                assert page.get_attribute("#next-estimate-cost", "data-exact") == cost
            if done == len(EXCHANGES):
                shoot(page, "chat-estimate")
            page.keyboard.press("Enter")
            page.locator('article.message-assistant[aria-busy="false"]').nth(done - 1).wait_for(timeout=20_000)
            page.wait_for_function("() => document.getElementById('chat-status').textContent.includes('Reply finished')")

            starts = [f for f in received if f.get("type") == "stream_start"]
            assert len(starts) == done
            assert (starts[-1]["model"], starts[-1]["estimated_prompt_tokens"]) == (model, shown)
            user_row = [m for m in messages_of(e2e_db, username) if m["role"] == "user"][-1]
            assert (user_row["figures_source"], user_row["prompt_tokens"]) == ("estimate", shown)
            user_badge = page.locator(f'article[data-message-id="{user_row["public_id"]}"] [data-badge="input"]')
            assert user_badge.get_attribute("data-tokens") == str(shown)
        # Later drafts resend the history: the figures grew with it.
        figures = [f["estimated_prompt_tokens"] for f in received if f.get("type") == "stream_start"]
        assert figures[2] > figures[0] + count_tokens(EXCHANGES[0][1], BPE_MODEL)

        page.set_viewport_size({"width": 390, "height": 844})
        type_draft(page, "And on a phone?")
        shown_estimate(page)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        shoot(page, "chat-estimate-phone")
    finally:
        context.close()
