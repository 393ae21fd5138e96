"""The chat pages: access, the transcript with its figures, safe markdown, the data the page's script reads."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from chat.conversations import delete_conversation
from chat.models import Conversation, Message
from chat.providers.base import ChatRequest, Turn, estimate_prompt_tokens
from tests.pages.conftest import make_exchange
from tests.pages.helpers import page_data, scan, scan_text
from usage.models import BudgetAlert, CatalogueEntry
from usage.tokens import count_tokens

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_login(client, owner):
    conversation, _, _ = make_exchange(owner)
    for url in ("/", f"/c/{conversation.public_id}/", "/usage/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_stranger_gets_404_for_someone_elses_conversation(owner, stranger_client):
    conversation, _, _ = make_exchange(owner, user_text="owner's secret")
    response = stranger_client.get(f"/c/{conversation.public_id}/")
    assert response.status_code == 404
    assert b"owner&#x27;s secret" not in response.content and b"owner's secret" not in response.content


def test_same_public_id_shows_each_user_only_their_own(owner, stranger, owner_client, stranger_client):
    mine = Conversation.objects.create(owner=owner, public_id="conv_1", title="mine")
    theirs = Conversation.objects.create(owner=stranger, public_id="conv_1", title="theirs")
    make_exchange(owner, conversation=mine, user_text="owner words")
    make_exchange(stranger, conversation=theirs, user_text="stranger words")
    own_page = owner_client.get("/c/conv_1/").content.decode()
    assert "owner words" in own_page and "stranger words" not in own_page
    their_page = stranger_client.get("/c/conv_1/").content.decode()
    assert "stranger words" in their_page and "owner words" not in their_page


def test_deleted_conversation_is_not_found(owner, owner_client):
    conversation, _, _ = make_exchange(owner)
    Conversation.objects.filter(pk=conversation.pk).update(deleted_at=conversation.created_at)
    assert owner_client.get(f"/c/{conversation.public_id}/").status_code == 404


def test_sidebar_lists_own_conversations_newest_first_with_figures(owner, stranger, owner_client):
    older, _, _ = make_exchange(owner, user_text="older question", completion_tokens=10, prompt_tokens=5)
    newer, _, _ = make_exchange(owner, user_text="newer question", cost="0.00120000")
    Conversation.objects.filter(pk=older.pk).update(updated_at=newer.updated_at.replace(year=2020))
    make_exchange(stranger, user_text="stranger question")
    html = owner_client.get("/").content.decode()
    assert html.index("newer question") < html.index("older question")
    assert "stranger question" not in html
    assert "152 tokens · <span class=\"money\" data-exact=\"0.0012\">$0.0012</span>" in html  # 32 in + 120 out, the newer conversation's totals
    assert "15 tokens · <span class=\"money\" data-exact=\"0.000309\" title=\"exactly $0.000309\" tabindex=\"0\">$0.00031</span>" in html


def test_account_summary_and_budget_bar(owner, owner_client):
    make_exchange(owner, prompt_tokens=32, completion_tokens=120, cost="0.00030900")
    make_exchange(owner, prompt_tokens=8, completion_tokens=2, cost="0.00000100")
    budget = owner.budget
    budget.token_limit = 1000
    budget.tokens_used = 250
    budget.save()
    response = owner_client.get("/")
    html = response.content.decode()
    assert '<dd id="account-input">40</dd>' in html
    assert '<dd id="account-output">122</dd>' in html
    assert '<dd id="account-cost"><span class="money" data-exact="0.00031">$0.00031</span></dd>' in html
    assert 'value="25"' in html  # the bar: 250 of 1000
    assert '<span id="budget-remaining">750</span> left' in html


def test_badges_render_the_stored_figures_on_both_bubbles(owner, owner_client):
    conversation, user_message, assistant = make_exchange(
        owner, prompt_tokens=32, completion_tokens=120, reasoning_tokens=40, cost="0.00030900"
    )
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert f'data-message-id="{user_message.public_id}"' in html
    assert 'data-badge="input" data-tokens="32" data-state="billed">32 tokens in' in html
    assert 'data-badge="output" data-tokens="120" data-state="billed">120 tokens out' in html
    assert 'data-badge="reasoning" data-tokens="40"' in html
    assert 'data-badge="cost" data-cost="0.000309"><span class="money" data-exact="0.000309" title="exactly $0.000309" tabindex="0">$0.00031</span>' in html
    assert f'data-user-message-id="{user_message.public_id}"' in html


def test_estimated_figures_look_different_and_say_so(owner, owner_client):
    conversation, _, _ = make_exchange(owner, figures_source=Message.FiguresSource.ESTIMATE)
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert 'class="badge estimate" data-badge="input" data-tokens="32" data-state="estimate"' in html
    assert '<span class="visually-hidden">estimate: </span>120 tokens out' in html


def test_no_reasoning_badge_when_there_was_none(owner, owner_client):
    conversation, _, _ = make_exchange(owner, reasoning_tokens=0)
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert 'data-badge="reasoning"' not in html


def test_stopped_answer_keeps_its_text_and_says_stopped(owner, owner_client):
    conversation, _, _ = make_exchange(owner, answer="Half an ans", status=Message.Status.CANCELLED)
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert "Half an ans" in html
    assert 'data-badge="status">stopped' in html


def test_header_summary_shows_the_conversation_totals(owner, owner_client):
    conversation, _, _ = make_exchange(owner, prompt_tokens=32, completion_tokens=120, cost="0.00030900")
    make_exchange(owner, conversation=conversation, prompt_tokens=200, completion_tokens=30, cost="0.00010000")
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert '<dd data-usage="input_tokens">232</dd>' in html
    assert '<dd data-usage="output_tokens">150</dd>' in html
    assert '<dd data-usage="total_tokens">382</dd>' in html
    assert ('<dd data-usage="cost"><span class="money" data-exact="0.000409" title="exactly $0.000409" tabindex="0">'
            '$0.00041</span></dd>') in html
    assert '<dd data-usage="message_count">4</dd>' in html


HOSTILE = (
    "<script>alert('x')</script>\n\n"
    "<img src=x onerror=alert(1)>\n\n"
    "[click](javascript:alert(1)) and [data](data:text/html;base64,PHNjcmlwdD4=)\n\n"
    "![pic](javascript:alert(2))\n\n"
    "```python\nprint('<b>kept</b>')\n```\n"
)


def test_hostile_markdown_cannot_run_anything_in_the_page(owner, owner_client):
    conversation, _, _ = make_exchange(owner, user_text=HOSTILE, answer=HOSTILE)
    Conversation.objects.filter(pk=conversation.pk).update(title="</script><script>alert(3)</script>")
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    found = scan(html)
    assert found.handlers == []
    assert not [u for u in found.urls if u.strip().lower().startswith(("javascript:", "data:"))]
    # Only our scripts: the theme's from static/, the json_script data, the vendored markdown-it and
    # DOMPurify (static/vendor/) and the page's module from static/.
    assert [(s["id"], s["type"], s["src"]) for s in found.scripts] == [
        (None, None, "/static/js/theme.js"), ("chat-data", "application/json", None),
        (None, None, "/static/vendor/markdown-it/markdown-it.min.js"),
        (None, None, "/static/vendor/dompurify/purify.min.js"),
        (None, "module", "/static/js/chat/main.js"),
    ]
    # Code blocks survive, escaped (and highlighted).
    assert '<pre><code class="language-python"><span class="nb">print</span>' in html
    assert '<span class="s1">\'&lt;b&gt;kept&lt;/b&gt;\'</span>' in html


def test_page_data_reaches_the_script_only_through_json_script(owner, owner_client):
    templates = Path(settings.BASE_DIR) / "templates"
    for path in [*templates.glob("chat/*.html"), *templates.glob("usage/dashboard.html")]:
        assert "|safe" not in path.read_text(), path
    conversation, _, _ = make_exchange(owner)
    data = page_data(owner_client.get(f"/c/{conversation.public_id}/").content.decode())
    assert data["conversation_id"] == conversation.public_id
    assert data["selected_model"] == "offline-demo"
    assert data["conversation_url_template"] == "/c/__id__/"


def test_next_message_estimate_counts_system_prompt_and_history(owner, owner_client):
    conversation, _, _ = make_exchange(owner, user_text="q" * 40, answer="a" * 80)
    Conversation.objects.filter(pk=conversation.pk).update(system_prompt="s" * 20)
    data = page_data(owner_client.get(f"/c/{conversation.public_id}/").content.decode())
    offline = next(m for m in data["models"] if m["id"] == "offline-demo")
    # The figure the budget check will use for an empty draft: system prompt + both turns resent.
    expected = estimate_prompt_tokens(ChatRequest(
        model="offline-demo", message="", system_prompt="s" * 20,
        history=(Turn("user", "q" * 40), Turn("assistant", "a" * 80)),
    ))
    assert offline["base_prompt_tokens"] == expected
    texts = count_tokens("s" * 20, "offline-demo") + count_tokens("q" * 40, "offline-demo") + count_tokens("a" * 80, "offline-demo")
    assert expected > texts > 0
    assert Decimal(offline["input_per_mtok"]) == 0 and offline["pricing_source"] == "free"

    fresh = page_data(owner_client.get("/").content.decode())
    fresh_offline = next(m for m in fresh["models"] if m["id"] == "offline-demo")
    assert fresh_offline["base_prompt_tokens"] == estimate_prompt_tokens(ChatRequest(model="offline-demo", message=""))
    assert fresh_offline["base_prompt_tokens"] < offline["base_prompt_tokens"]


def test_model_selector_lists_current_models_with_prices_and_disables_unavailable(owner, owner_client, settings):
    settings.PROVIDERS = {name: {**cfg, "api_key": ""} for name, cfg in settings.PROVIDERS.items()}
    html = owner_client.get("/").content.decode()
    for entry in CatalogueEntry.objects.all():
        assert f'<option value="{entry.model_id}"' in html
        if entry.provider != "offline":
            assert f'<option value="{entry.model_id}" disabled>' in html
    assert '<option value="offline-demo" selected>' in html
    assert "per 1M" in html


def test_model_selector_groups_by_provider_says_free_or_unknown_and_hides_models_gone(owner, owner_client, settings):
    settings.PROVIDERS = {**settings.PROVIDERS, "box": {"api_key": "", "base_url": "http://127.0.0.1:9/v1",
                                                        "free": False, "label": "My box"}}
    CatalogueEntry.objects.create(provider="box", model_id="qwen3:8b", display_name="Qwen3 8B")
    CatalogueEntry.objects.filter(model_id="gpt-4.1").update(listed=False)
    html = owner_client.get("/").content.decode()
    groups = re.findall(r'<optgroup label="([^"]+)">', html)
    assert groups == ["Offline", "OpenAI", "OpenRouter", "Gemini", "My box"]
    assert re.search(r'<option value="qwen3:8b"[^>]*>Qwen3 8B — price unknown<', html)
    assert re.search(r'<option value="offline-demo"[^>]*>Offline demo \(free, no network\) — free<', html)
    assert '<option value="gpt-4.1"' not in html  # its provider no longer lists it
    assert 'id="model-search"' in html
    data = page_data(html)
    qwen = next(m for m in data["models"] if m["id"] == "qwen3:8b")
    assert qwen["input_per_mtok"] is None and qwen["pricing_source"] is None


def test_budget_alerts_partial_shows_on_the_chat_page(owner, owner_client):
    BudgetAlert.objects.create(user=owner, threshold=80, period_start=owner.budget.period_start,
                               message="You have used 80% of this month's tokens.")
    html = owner_client.get("/").content.decode()
    assert "You have used 80% of this month&#x27;s tokens." in html


def test_accessibility_landmarks_are_there(owner, owner_client):
    conversation, _, _ = make_exchange(owner)
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert 'role="log"' in html and 'aria-live="polite"' in html
    assert '<p id="chat-status" class="visually-hidden" role="status"' in html
    assert '<label for="message-input"' in html and '<label for="model-select">' in html
    assert 'aria-current="page"' in html


def test_pages_load_nothing_from_outside_the_app(owner, owner_client):
    conversation, _, _ = make_exchange(owner, answer="see [docs](https://example.com/docs)")
    chat_css = ["/static/css/app.css", "/static/css/code.css"]
    for url, css in ((f"/c/{conversation.public_id}/", chat_css), ("/usage/", ["/static/css/app.css"])):
        html = owner_client.get(url).content.decode()
        found = scan(html)
        sources = [s["src"] for s in found.scripts if s["src"]]
        assert all(src.startswith("/static/") for src in sources)
        stylesheets = [u for u in found.urls if u.endswith(".css")]
        assert stylesheets == css


def test_conversation_page_costs_a_bounded_number_of_queries(owner, owner_client, django_assert_max_num_queries):
    conversation, _, _ = make_exchange(owner)
    for _ in range(30):
        make_exchange(owner, conversation=conversation)
    for _ in range(30):
        make_exchange(owner)
    # Session, user, sidebar, transcript, totals, budget, catalogue and its prices, history, attachments,
    # alerts: not one per message, conversation or model.
    with django_assert_max_num_queries(17):
        response = owner_client.get(f"/c/{conversation.public_id}/")
    assert response.status_code == 200


def test_an_answer_no_source_prices_says_price_unknown_never_a_cost(owner, owner_client):
    conversation, _, answer = make_exchange(owner)
    Message.objects.filter(pk=answer.pk).update(cost=None)
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert 'data-badge="cost" data-state="unknown">price unknown' in html
    assert 'data-badge="cost" data-cost=' not in html


def test_titles_and_previews_are_plain_words_and_ids_stay_out_of_sight(owner, owner_client):
    conversation, user_message, assistant = make_exchange(owner, user_text="# Trip **plan**",
                                                          answer="Take the `train` and [a map](https://example.com).")
    untitled = Conversation.objects.create(owner=owner, title="")
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    sidebar = html.split('id="conversation-list"')[1].split("</ul>")[0]
    assert f'<span class="conv-title" id="title-{conversation.public_id}">Trip plan</span>' in sidebar
    assert '<span class="conv-preview">Take the train and a map.</span>' in sidebar
    assert '<h1 id="chat-title">Trip plan</h1>' in html
    # Ids live in data attributes only, never in the text: not for messages, not for an untitled conversation.
    assert "Untitled conversation" in sidebar
    text = " ".join(scan_text(html))
    for public_id in (conversation.public_id, user_message.public_id, assistant.public_id, untitled.public_id):
        assert public_id not in text



def test_large_figures_have_thousands_separators_and_costs_a_short_form(owner, owner_client):
    conversation, _, _ = make_exchange(owner, prompt_tokens=12_345, completion_tokens=1_234_567, cost="1234.56789")
    budget = owner.budget
    budget.token_limit = 1_000_000
    budget.save()
    html = owner_client.get(f"/c/{conversation.public_id}/").content.decode()
    assert "12,345 tokens in" in html and "1,234,567 tokens out" in html
    assert '<dd data-usage="total_tokens">1,246,912</dd>' in html
    assert " of 1,000,000 tokens used" in html
    assert 'title="exactly $1,234.56789" tabindex="0">$1,234.57</span>' in html


def sidebar_titles(html: str) -> list[str]:
    sidebar = html.split('id="conversation-list"')[1].split("</ul>")[0]
    return [part.split(">", 1)[1].split("<", 1)[0] for part in sidebar.split('<span class="conv-title"')[1:]]


def test_search_finds_titles_and_message_text_of_the_owners_conversations_only(owner, stranger, owner_client):
    by_title, _, _ = make_exchange(owner, user_text="Kyoto trains", answer="Take the Shinkansen.")
    by_answer, _, _ = make_exchange(owner, user_text="Holiday ideas", answer="Visit the KYOTO gardens.")
    make_exchange(owner, user_text="Tax forms", answer="File by April.")
    make_exchange(stranger, user_text="Kyoto for strangers", answer="Kyoto.")
    Conversation.objects.filter(pk=by_title.pk).update(updated_at=by_answer.updated_at.replace(year=2020))
    html = owner_client.get("/?q=kyoto").content.decode()
    assert sidebar_titles(html) == ["Holiday ideas", "Kyoto trains"]  # newest first
    assert 'aria-label="Search conversations"' in html and 'value="kyoto"' in html
    assert "2 found for “kyoto”" in html
    assert sidebar_titles(owner_client.get("/?q=nothing-like-it").content.decode()) == []
    assert len(sidebar_titles(owner_client.get("/").content.decode())) == 3
    # A deleted conversation is not found, and its usage stays in the account's totals.
    deleted = Conversation.objects.get(pk=by_answer.pk)
    delete_conversation(deleted)
    html = owner_client.get("/?q=kyoto").content.decode()
    assert sidebar_titles(html) == ["Kyoto trains"]
    assert '<dd id="account-input">96</dd>' in html  # 3 x 32 prompt tokens, the deleted one included
