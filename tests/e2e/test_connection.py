"""Connection trouble, told honestly: a real daphne taken down and brought back on the same port.

The page says where it stands (connected; offline, reconnecting, next try in N s, "Retry now"), a
message typed while the server is down waits in its bubble and is sent once when it is back (one
user message, one usage row, real figures), an answer cut off mid-stream shows what the server
stored ("stopped", its figures) without being sent again, and no typed text is lost to a reload.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from chat.markdown import plain_text
from chatlima.formats import money_display
from tests.daphne import Daphne
from tests.e2e.conftest import _server_env

pytestmark = pytest.mark.e2e

# The offline model's words arrive this many ms apart on this server: slow enough to stop it mid-answer.
SLOW_CHUNK_DELAY_MS = 120
_names = itertools.count()


class RestartableServer(Daphne):
    """One daphne on a fixed port: stop() terminates it, start() runs a new one on the same port."""

    def stop(self, timeout: float = 20) -> None:  # a server stopped mid-stream is given longer
        super().stop(timeout)


@pytest.fixture(scope="module")
def server(e2e_db, tmp_path_factory) -> Iterator[RestartableServer]:
    env = _server_env(e2e_db.url)
    env["CHATLIMA_OFFLINE_CHUNK_DELAY_MS"] = str(SLOW_CHUNK_DELAY_MS)
    server = RestartableServer(env, tmp_path_factory.mktemp("daphne-restart"), ready_path="/accounts/login/")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def up(server) -> RestartableServer:
    """The server, running (a test before may have left it down)."""
    if not server.running:
        server.start()
    return server


@pytest.fixture
def page(browser, up):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=up.base)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.sockets_seen = []
    page.sent_frames = []  # the send_message frames the page put on any of its sockets
    page.received = []  # (the page's socket number, event) for the events each socket carried

    def decoded(payload) -> dict:
        try:
            frame = json.loads(payload)
        except (TypeError, ValueError):
            return {}
        return frame if isinstance(frame, dict) else {}

    def watch(ws) -> None:
        number = len(page.sockets_seen)
        page.sockets_seen.append(ws)

        def sent(payload) -> None:
            frame = decoded(payload)
            if frame.get("type") == "send_message":
                page.sent_frames.append(frame)
        ws.on("framesent", sent)
        ws.on("framereceived", lambda payload: page.received.append((number, decoded(payload))))

    page.on("websocket", watch)
    yield page
    context.close()


def sign_up(page) -> str:
    username = f"conn{next(_names)}"
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", "a-long-connection-password-1")
    page.fill("#id_password2", "a-long-connection-password-1")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    wait_connected(page)
    return username


def wait_connected(page, timeout: float = 30_000) -> None:
    page.locator('#connection[data-state="open"]').wait_for(timeout=timeout)
    assert page.text_content("#connection-status") == "Connected"


def wait_down(page) -> None:
    page.locator('#connection[data-state="down"]').wait_for()
    assert page.text_content("#connection-status").startswith("Offline")


def messages_of(e2e_db, username: str) -> list[dict]:
    return e2e_db.rows(
        "SELECT m.public_id, m.role, m.status, m.content, m.prompt_tokens, m.completion_tokens, m.cost, "
        "m.figures_source FROM chat_message m JOIN accounts_user u ON u.id = m.owner_id "
        "WHERE u.username = %s ORDER BY m.timestamp, m.id", username)


def usage_rows(e2e_db, username: str) -> list[dict]:
    return e2e_db.rows(
        "SELECT l.request_id, l.status, l.prompt_tokens, l.completion_tokens FROM api_usage_logs l "
        "JOIN accounts_user u ON u.id = l.user_id WHERE u.username = %s", username)


def check_stored_figures(page, user_row: dict, answer_row: dict) -> None:
    """The bubbles show the stored figures, not a pending or streaming estimate."""
    user_badge = page.locator(f'article[data-message-id="{user_row["public_id"]}"] [data-badge="input"]')
    assert user_badge.get_attribute("data-state") != "pending"
    assert user_badge.get_attribute("data-tokens") == str(user_row["prompt_tokens"])
    assert f"{user_row['prompt_tokens']} tokens in" in user_badge.text_content()
    answer = page.locator(f'article[data-message-id="{answer_row["public_id"]}"]')
    out = answer.locator('[data-badge="output"]')
    assert out.get_attribute("data-state") in ("estimate", "billed")
    assert out.get_attribute("data-tokens") == str(answer_row["completion_tokens"])
    assert f"{answer_row['completion_tokens']} tokens out" in out.text_content()
    cost = answer.locator('[data-badge="cost"]')
    assert cost.get_attribute("data-cost") == money_display(Decimal(str(answer_row["cost"])))
    assert "input tokens pending" not in page.text_content("#transcript")


def test_a_message_sent_while_the_server_is_down_waits_and_is_sent_once_when_it_is_back(page, up, e2e_db, shoot):
    username = sign_up(page)
    up.stop()
    wait_down(page)
    page.wait_for_function("() => /next try in \\d+ s/.test(document.getElementById('connection-countdown').textContent)")
    assert page.get_by_role("button", name="Retry now").is_visible()
    # The words a screen reader hears are the state, not the countdown (which ticks outside the region).
    status = page.get_by_role("status").filter(has_text="Offline")
    assert status.text_content() == "Offline. Reconnecting…"

    text = "Are you there after the outage?"
    page.fill("#message-input", text)
    page.keyboard.press("Enter")
    bubble = page.locator("article.message-user").last
    assert bubble.locator(".bubble-content").text_content() == text  # not lost: it waits in its bubble
    delivery = bubble.locator('[data-badge="delivery"]')
    assert delivery.text_content() == "waiting for connection"
    unsent = json.loads(page.evaluate("() => sessionStorage.getItem('chatlima.unsent.new')"))
    assert unsent["text"] == text and unsent["id"] == bubble.get_attribute("data-message-id")
    assert page.sent_frames == []
    assert "dropped" not in page.text_content("body")
    shoot(page, "connection-offline-1280")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shoot(page, "connection-offline-390")
    page.set_viewport_size({"width": 1280, "height": 860})

    up.start()
    wait_connected(page)
    page.locator('article.message-assistant[aria-busy="false"]').wait_for(timeout=30_000)
    page.locator('article.message-user [data-badge="delivery"][data-state="answered"]').wait_for()

    stored = messages_of(e2e_db, username)
    assert [(m["role"], m["status"]) for m in stored] == [("user", "complete"), ("assistant", "complete")]
    user_row, answer_row = stored
    assert user_row["public_id"] == unsent["id"] and user_row["content"] == text
    assert [(r["request_id"], r["status"]) for r in usage_rows(e2e_db, username)] == [(unsent["id"], "success")]
    assert [f["client_message_id"] for f in page.sent_frames] == [unsent["id"]]  # sent exactly once
    check_stored_figures(page, user_row, answer_row)
    assert page.locator("#chat-error").is_hidden()
    assert page.evaluate("() => sessionStorage.getItem('chatlima.unsent.new')") is None
    shoot(page, "connection-back-1280")


def test_a_drop_mid_stream_shows_what_the_server_stored_and_does_not_resend(page, up, e2e_db, shoot):
    username = sign_up(page)
    page.fill("#message-input", " ".join(f"word{i}" for i in range(150)))
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const b = document.querySelector('article.message-assistant .bubble-content');"
        " return b && b.textContent.length > 40; }")
    up.stop()
    wait_down(page)
    assistant = page.locator("article.message-assistant")
    assert assistant.get_attribute("aria-busy") == "false"
    assert page.locator('article.message-user [data-badge="delivery"]').text_content() == "sent"
    assert assistant.locator('[data-badge="status"]').text_content() == "connection lost"
    assert page.locator("#chat-error").is_hidden()  # nothing is claimed until the server says what it kept
    shoot(page, "connection-dropped-offline-1280")

    up.start()
    wait_connected(page)
    error = page.locator("#chat-error")
    error.wait_for()
    assert error.text_content().startswith("The connection dropped while the reply was streaming")
    assert assistant.locator('[data-badge="status"]').text_content() == "stopped"

    user_row, answer_row = messages_of(e2e_db, username)
    assert answer_row["status"] == "cancelled" and answer_row["completion_tokens"] > 0
    # The bubble shows the stored answer rendered: its words, without the markdown signs.
    shown = " ".join(assistant.locator(".bubble-content").text_content().split())
    assert answer_row["content"] and plain_text(answer_row["content"]).startswith(shown[:40])
    assert [r["status"] for r in usage_rows(e2e_db, username)] == ["cancelled"]
    assert assistant.get_attribute("data-message-id") == answer_row["public_id"]
    check_stored_figures(page, user_row, answer_row)
    assert len(page.sent_frames) == 1  # not sent again after the reconnect
    shoot(page, "connection-dropped-back-1280")
    page.set_viewport_size({"width": 390, "height": 800})
    # A phone shows the end of the transcript, as the page left it at its own width.
    page.evaluate("() => { const t = document.getElementById('transcript'); t.scrollTop = t.scrollHeight; }")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shoot(page, "connection-dropped-back-390")


def test_a_reload_keeps_the_draft_and_an_unconfirmed_message(page, up, e2e_db):
    username = sign_up(page)
    page.fill("#message-input", "A draft I have not sent\nwith two lines")
    page.reload()
    wait_connected(page)
    assert page.input_value("#message-input") == "A draft I have not sent\nwith two lines"

    # Sent while the server is down, then the page reloaded before it was ever confirmed: it comes back.
    up.stop()
    wait_down(page)
    page.fill("#message-input", "Sent while offline, then reloaded")
    page.keyboard.press("Enter")
    page.locator('[data-badge="delivery"][data-state="waiting"]').wait_for()
    waiting_id = page.locator("article.message-user").last.get_attribute("data-message-id")
    from playwright.sync_api import Error as BrowserError

    with pytest.raises(BrowserError, match="ERR_CONNECTION_REFUSED"):  # the server is down
        page.reload(timeout=5_000)
    up.start()
    page.goto("/")
    wait_connected(page)
    assert page.input_value("#message-input") == "Sent while offline, then reloaded"
    assert messages_of(e2e_db, username) == []

    # Sent unchanged, it keeps its client_message_id (a copy the server had stored would be replayed);
    # confirmed, the box and its stored copy are empty after a reload.
    page.click("#send-button")
    page.locator('article.message-assistant[aria-busy="false"]').wait_for(timeout=30_000)
    assert [(m["public_id"], m["content"]) for m in messages_of(e2e_db, username) if m["role"] == "user"] == [
        (waiting_id, "Sent while offline, then reloaded")]
    page.reload()
    wait_connected(page)
    assert page.input_value("#message-input") == ""


def countdown_at_least(page, seconds: int) -> None:
    page.wait_for_function(
        "(least) => { const m = /next try in (\\d+) s/.exec(document.getElementById('connection-countdown').textContent);"
        " return m && Number(m[1]) >= least; }", arg=seconds, timeout=30_000)


def test_retry_now_works_by_keyboard(page, up, shoot):
    sign_up(page)
    up.stop()
    wait_down(page)
    countdown_at_least(page, 2)
    # Back from the message box by keyboard: past the attachment controls, to "Retry now".
    page.focus("#message-input")
    for _ in range(8):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("() => document.activeElement.id") == "connection-retry":
            break
    retry = page.get_by_role("button", name="Retry now")
    assert page.evaluate("() => document.activeElement.id") == "connection-retry"

    # Server still down: Enter tries at once (a new socket), and the wait before the next try grows.
    for least in (8, 15):
        attempts = len(page.sockets_seen)
        page.keyboard.press("Enter")
        deadline = time.monotonic() + 2
        while len(page.sockets_seen) == attempts and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert len(page.sockets_seen) == attempts + 1
        countdown_at_least(page, least)
        assert page.evaluate("() => document.activeElement.id") == "connection-retry"  # focus stays on it
    shoot(page, "connection-reconnecting-1280")
    page.emulate_media(color_scheme="dark")
    shoot(page, "connection-reconnecting-dark-1280")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    shoot(page, "connection-reconnecting-390")

    # Server back, the next try still seconds away: Space on "Retry now" connects now.
    up.start()
    assert retry.is_visible() and page.evaluate("() => document.activeElement.id") == "connection-retry"
    started = time.monotonic()
    page.keyboard.press("Space")
    wait_connected(page, timeout=3_000)
    assert time.monotonic() - started < 3
    assert retry.is_hidden()
    assert page.evaluate("() => document.activeElement.id") == "message-input"  # the keyboard is not lost


def test_a_message_unconfirmed_when_the_socket_drops_is_resent_once_and_its_replay_fills_the_bubbles(page, up, e2e_db):
    """The frame reached the server, which stored and answered it, but the socket went before any of
    that reached the page: the page sends it again with the same client_message_id, and the server's
    replay (no second provider call, no second usage row) fills both bubbles with the stored figures."""
    username = sign_up(page)
    routed = {"sockets": 0}

    def route(ws) -> None:
        routed["sockets"] += 1
        server = ws.connect_to_server()
        if routed["sockets"] > 1:
            return  # later sockets: everything passes both ways

        def from_server(message) -> None:
            event = json.loads(message)
            if event.get("type") == "message_complete":
                ws.close(code=4000, reason="lost")  # the page never heard of it
            elif event.get("type") not in ("message_saved", "stream_start", "stream_chunk", "stream_end"):
                ws.send(message)

        server.on_message(from_server)

    page.route_web_socket("**/ws/chat/", route)
    page.reload()
    wait_connected(page)
    page.fill("#message-input", "Did my message arrive?")
    page.keyboard.press("Enter")
    page.locator('article.message-assistant[aria-busy="false"]').wait_for(timeout=30_000)
    page.locator('article.message-user [data-badge="delivery"][data-state="answered"]').wait_for()

    assert routed["sockets"] == 2
    ids = [f["client_message_id"] for f in page.sent_frames]
    assert len(ids) == 2 and ids[0] == ids[1]  # once more after the reconnect, with the same id
    user_row, answer_row = messages_of(e2e_db, username)
    assert user_row["public_id"] == ids[0] and answer_row["status"] == "complete"
    assert [(r["request_id"], r["status"]) for r in usage_rows(e2e_db, username)] == [(ids[0], "success")]
    check_stored_figures(page, user_row, answer_row)
    # The socket after the drop carried the replay: the stored answer, not a second live one.
    after = [e for n, e in page.received if n == len(page.sockets_seen) - 1 and e.get("request_id") == ids[0]]
    assert [e["type"] for e in after] == ["message_saved", "stream_start", "stream_chunk", "stream_end",
                                          "message_complete"]
    assert after[1]["replayed"] is True and after[-1]["replayed"] is True
    assert page.locator("article.message-assistant").count() == 1
    assert page.locator("article.message-assistant .bubble-content").text_content().strip()
    assert page.locator("#chat-error").is_hidden()
