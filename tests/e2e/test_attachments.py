"""Files and URLs as context, on the chat page in a real browser (issue 16).

A new chat attaches a Markdown file and a small PDF by "Attach files", a text file by drag and
drop, and a web page served by a local HTTP server in the test (the e2e server runs with
CHATLIMA_FETCH_ALLOW_PRIVATE=1); each shows its tokens and cost, the estimate grows by them and
says their share, the send's usage row notes them, one is removed by keyboard and the estimate
shrinks, an over-limit file is refused with the server's message, and after a reload the list is
still there. Screenshots at 1280 and 390 px, light and dark.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.attachments.helpers import make_pdf
from tests.e2e.test_browser import sign_up
from tests.e2e.test_settings_and_gauge import count, usage_metadata, wait_reply, wait_server_estimate

pytestmark = pytest.mark.e2e

MODEL = "gpt-4o-mini"  # the fake OpenAI server's; $0.15 per million input tokens
UNPRICED = "acme-unpriced-7b"
MARKDOWN = "# Launch notes\n\n* the attachments API ships on Tuesday\n* the page shows what each one costs\n" * 8
PDF_LINE = "Quarterly revenue rose twelve percent"
DROPPED = "Dropped note: the harbour opens at six in the morning. " * 12
PAGE = ("<html><head><title>Harbour timetable</title></head><body><article><h1>Harbour timetable</h1>"
        + "<p>The ferry leaves the harbour every hour from six in the morning until ten at night, "
          "and the last boat back waits for the evening train.</p>" * 6
        + "</article></body></html>")
MAX_BYTES = 10 * 1024 * 1024  # CHATLIMA_ATTACHMENT_MAX_BYTES's default


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """A local web page the server fetches (loopback, allowed on the e2e server only)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/timetable.html"
    finally:
        server.shutdown()
        server.server_close()


def items(page) -> list[dict]:
    return page.evaluate("""() => Array.from(document.querySelectorAll('#attachment-list li.attachment'), (li) => ({
        name: li.querySelector('.attachment-name').textContent, kind: li.dataset.kind,
        tokens: Number(li.dataset.tokens), text: li.innerText,
        shown: li.querySelector('[data-field="tokens"]').textContent,
        cost: li.querySelector('[data-field="cost"]').textContent}))""")


def wait_items(page, n: int) -> list[dict]:
    page.wait_for_function("(n) => document.querySelectorAll('#attachment-list li.attachment').length === n", arg=n)
    return items(page)


def next_tokens(page) -> int:
    return count(page.text_content("#next-estimate-tokens"))


def wait_estimate_change(page, before: int) -> int:
    """Until the server's figure for the next message differs from `before`."""
    page.wait_for_function(
        "(before) => document.getElementById('next-estimate').dataset.source === 'server'"
        " && Number(document.getElementById('next-estimate-tokens').textContent.replace(/,/g, '')) !== before",
        arg=before)
    return next_tokens(page)


def attachments_share(page) -> int | None:
    node = page.locator("#next-estimate-attachments")
    return count(node.locator("span").text_content()) if node.is_visible() else None


def test_attach_see_costs_send_remove_and_reload(browser, server_url, e2e_db, site, shoot):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        username = sign_up(page, "attacher")
        page.select_option("#model-select", MODEL)
        wait_server_estimate(page)
        empty = next_tokens(page)
        assert attachments_share(page) is None

        # Keyboard: "Attach files", then the URL field, then its button.
        page.get_by_role("button", name="Attach files").focus()
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "attach-url-input"
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "attach-url-button"

        # A new chat's settings go with the conversation the first attachment makes.
        page.locator("#conv-settings summary").click()
        page.get_by_label("System prompt").fill("Answer from the attachments.")

        # By the button: a Markdown file and a PDF, in a new chat (its conversation is made first).
        with page.expect_file_chooser() as chooser:
            page.get_by_role("button", name="Attach files").click()
        chooser.value.set_files([
            {"name": "notes.md", "mimeType": "text/markdown", "buffer": MARKDOWN.encode()},
            {"name": "q3.pdf", "mimeType": "application/pdf", "buffer": make_pdf([PDF_LINE, "Costs fell."])},
        ])
        listed = wait_items(page, 2)
        conversation = e2e_db.rows(
            "SELECT c.public_id, c.title, c.model, c.system_prompt FROM chat_conversation c "
            "JOIN accounts_user u ON u.id = c.owner_id "
            "WHERE u.username = %s", username)
        assert len(conversation) == 1
        assert (conversation[0]["model"], conversation[0]["system_prompt"]) == (MODEL, "Answer from the attachments.")
        assert page.url.endswith(f"/c/{conversation[0]['public_id']}/")
        assert page.text_content("#chat-title") == "notes.md"
        assert [(i["name"], i["kind"]) for i in listed] == [("notes.md", "file"), ("q3.pdf", "file")]
        for item in listed:
            assert item["tokens"] > 0 and item["shown"] == f"{item['tokens']:,}"
            assert item["cost"].startswith("about $") and item["cost"].endswith("on each message")
        assert "markdown file" in listed[0]["text"] and "pdf file" in listed[1]["text"]
        page.wait_for_function("() => document.getElementById('attach-status').textContent.startsWith('Attached q3.pdf')")
        with_files = wait_estimate_change(page, empty)
        assert with_files >= empty + sum(i["tokens"] for i in listed)
        assert attachments_share(page) == sum(i["tokens"] for i in listed)

        # By drag and drop onto the transcript: the drop zone shows while dragging.
        drop = page.evaluate_handle("""(text) => { const dt = new DataTransfer();
            dt.items.add(new File([text], 'dropped.txt', {type: 'text/plain'})); return dt; }""", DROPPED)
        page.dispatch_event("#transcript", "dragenter", {"dataTransfer": drop})
        page.dispatch_event("#transcript", "dragover", {"dataTransfer": drop})
        zone = page.locator("#drop-zone")
        assert zone.is_visible() and zone.inner_text() == "Drop files to attach them"
        shoot(page, "attachments-drop-zone-1280")
        page.dispatch_event("#transcript", "drop", {"dataTransfer": drop})
        assert zone.is_hidden()
        listed = wait_items(page, 3)
        assert listed[2]["name"] == "dropped.txt" and "text file" in listed[2]["text"]
        with_drop = wait_estimate_change(page, with_files)
        assert with_drop > with_files
        # Dropped beside the chat (the sidebar): not opened by the browser in place of the page, not attached.
        opened = page.evaluate("""(dt) => document.getElementById('sidebar').dispatchEvent(
            new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}))""", drop)
        assert opened is False and len(items(page)) == 3

        # A URL: fetched by the server, shown with its fetch time and a Refetch button.
        page.get_by_label("Add a URL").fill(site)
        page.get_by_role("button", name="Add a URL").click()
        listed = wait_items(page, 4)
        web = listed[3]
        assert web["name"] == "Harbour timetable" and web["kind"] == "url"
        assert "web page" in web["text"] and "fetched " in web["text"] and "UTC" in web["text"]
        assert page.get_by_role("button", name="Refetch Harbour timetable").is_visible()
        with_url = wait_estimate_change(page, with_drop)
        total = sum(i["tokens"] for i in listed)
        assert attachments_share(page) == total
        assert page.get_by_label("Add a URL").input_value() == ""

        # Refetch: the same page again, the same tokens, announced.
        page.get_by_role("button", name="Refetch Harbour timetable").click()
        page.wait_for_function("() => document.getElementById('attach-status').textContent.startsWith('Fetched')")
        assert wait_items(page, 4)[3]["tokens"] == web["tokens"]

        # An over-limit file: refused with the server's message, nothing listed.
        page.set_input_files("#attach-file-input", [{"name": "huge.txt", "mimeType": "text/plain",
                                                     "buffer": b"a" * (MAX_BYTES + 1)}])
        error = page.locator("#attach-error")
        error.wait_for()
        assert error.inner_text() == f"Not attached: huge.txt: A file may be at most {MAX_BYTES:,} bytes."
        assert len(items(page)) == 4
        shoot(page, "attachments-1280-light")

        # Send: the usage row notes what the message carried.
        page.get_by_label("Message").fill("Summarise what I attached.")
        page.get_by_role("button", name="Send").click()
        wait_reply(page, 1)
        metadata = usage_metadata(e2e_db, username)
        assert (metadata["file_count"], metadata["url_count"], metadata["attachment_tokens"]) == (3, 1, total)
        assert metadata["estimated_prompt_tokens"] >= with_url

        # Remove the dropped file by keyboard: its row goes, focus stays in the list, the estimate shrinks.
        wait_server_estimate(page)
        before_remove = next_tokens(page)
        page.get_by_role("button", name="Remove dropped.txt").focus()
        page.keyboard.press("Enter")
        listed = wait_items(page, 3)
        assert "dropped.txt" not in [i["name"] for i in listed]
        page.wait_for_function("() => document.getElementById('attach-status').textContent.startsWith('Removed dropped.txt')")
        assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Remove Harbour timetable"
        after_remove = wait_estimate_change(page, before_remove)
        assert after_remove < before_remove
        assert attachments_share(page) == sum(i["tokens"] for i in listed)

        # After a reload the list is still there, with the same figures.
        page.reload()
        page.wait_for_function("() => document.getElementById('next-estimate').dataset.source === 'server'")
        assert [(i["name"], i["tokens"]) for i in items(page)] == [(i["name"], i["tokens"]) for i in listed]
        assert next_tokens(page) == after_remove
        assert attachments_share(page) == sum(i["tokens"] for i in listed)

        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.set_viewport_size({"width": 1280, "height": 900})
            shoot(page, f"attachments-reload-1280-{scheme}")
            page.set_viewport_size({"width": 390, "height": 844})
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
            shoot(page, f"attachments-390-{scheme}")
    finally:
        context.close()


def test_an_unpriced_model_says_price_unknown_for_each_attachment(browser, server_url, e2e_db):
    e2e_db.execute(
        "INSERT INTO usage_catalogueentry (provider, model_id, display_name, context_window, listed, first_seen_at, last_seen_at) "
        "VALUES ('openai', %s, 'Acme Unpriced 7B', NULL, %s, '2026-11-01 00:00:00', NULL)",
        UNPRICED, True)
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server_url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        sign_up(page, "unpriced")
        page.select_option("#model-select", MODEL)
        page.set_input_files("#attach-file-input", [{"name": "notes.md", "mimeType": "text/markdown",
                                                     "buffer": MARKDOWN.encode()}])
        [item] = wait_items(page, 1)
        assert item["cost"].startswith("about $")
        page.select_option("#model-select", UNPRICED)
        [item] = items(page)
        assert item["cost"] == "price unknown"
        assert "$" not in item["text"]
        # Its draft estimate says so too, and still counts the attachment.
        wait_server_estimate(page)
        assert page.text_content("#next-estimate-price") == "price unknown"
        assert attachments_share(page) is not None
    finally:
        context.close()
