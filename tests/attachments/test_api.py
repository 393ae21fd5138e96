"""The attachments REST doors: add, list, remove, refetch; limits; the owner's alone; deleted
with their conversation; kept out of the sync pull."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chat.attachments.models import Attachment
from chat.models import Conversation
from tests.api.conftest import pull_all
from tests.attachments.conftest import ARTICLE
from tests.attachments.helpers import make_pdf, upload

BASE = "/api/v1/conversations/conv_a/attachments"


@pytest.fixture
def conv(owner) -> Conversation:
    return Conversation.objects.create(owner=owner, public_id="conv_a", title="With files", model="gpt-4o")


def post_file(client, name: str, data, content_type: str = "application/octet-stream", url: str = BASE):
    return client.post(url, {"file": upload(name, data, content_type)}, format="multipart")


def test_it_attaches_a_file_and_lists_it(owner_api, conv):
    response = post_file(owner_api, "notes.md", "# Plan\n\nShip the attachments API.")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "file" and body["name"] == "notes.md" and body["format"] == "markdown"
    assert body["bytes"] == len(b"# Plan\n\nShip the attachments API.") and body["tokens"] > 0
    assert body["id"].startswith("att_") and body["created_at"] and body["fetched_at"] is None
    stored = Attachment.objects.get(public_id=body["id"])
    assert stored.text == "# Plan\n\nShip the attachments API." and stored.tokens_model == "gpt-4o"
    listed = owner_api.get(BASE).json()["results"]
    assert [a["id"] for a in listed] == [body["id"]]
    assert "text" not in listed[0]


def test_it_counts_a_file_with_the_conversations_tokenizer(owner_api, conv):
    from usage.tokens import count_tokens

    text = "Tokenizers differ: unbelievably, the counts do too."
    tokens = post_file(owner_api, "a.txt", text).json()["tokens"]
    assert tokens == count_tokens(text, "gpt-4o")


def test_it_attaches_a_pdf(owner_api, conv):
    response = post_file(owner_api, "report.pdf", make_pdf(["Revenue rose 12 percent"]), "application/pdf")
    assert response.status_code == 201 and response.json()["format"] == "pdf"
    assert "Revenue rose 12 percent" in Attachment.objects.get().text


def test_it_attaches_a_url_with_its_fetch_time(owner_api, conv, site, allow_private):
    url = site.page("/article.html", ARTICLE)
    response = owner_api.post(BASE, {"url": url}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "url" and body["url"] == url and body["fetched_at"] and body["format"] == "html"
    assert body["name"] == "Honest token accounting"
    text = Attachment.objects.get().text
    assert "exactly one usage row" in text and "<p>" not in text and "Log in" not in text


def test_it_refetches_a_url_on_demand(owner_api, conv, site, allow_private):
    url = site.page("/notes.txt", "first version", "text/plain")
    first = owner_api.post(BASE, {"url": url}, format="json").json()
    site.page("/notes.txt", "second, longer version of the notes", "text/plain")
    again = owner_api.post(f"{BASE}/{first['id']}/refetch")
    assert again.status_code == 200, again.content
    assert again.json()["fetched_at"] > first["fetched_at"] and again.json()["tokens"] > first["tokens"]
    assert Attachment.objects.get().text == "second, longer version of the notes"
    file_id = post_file(owner_api, "a.txt", "a file").json()["id"]
    assert owner_api.post(f"{BASE}/{file_id}/refetch").status_code == 400


def test_a_failed_refetch_keeps_what_was_stored(owner_api, conv, site, allow_private):
    url = site.page("/notes.txt", "kept text", "text/plain")
    first = owner_api.post(BASE, {"url": url}, format="json").json()
    del site.routes["/notes.txt"]
    assert owner_api.post(f"{BASE}/{first['id']}/refetch").status_code == 400
    assert Attachment.objects.get().text == "kept text"


def test_it_refuses_a_private_url_with_the_contracts_error(owner_api, conv, site):
    url = site.page("/article.html", ARTICLE)
    response = owner_api.post(BASE, {"url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_MESSAGE"
    assert response.json()["error"]["details"]["reason"] == "private address"
    assert site.requests == [] and not Attachment.objects.exists()


def test_it_refuses_a_name_of_a_private_address_without_connecting(owner_api, conv, settings, connections_refused):
    settings.CHATLIMA_FETCH_RESOLVER = "tests.attachments.resolver.with_a_private_name"
    response = owner_api.post(BASE, {"url": "https://intranet.example/wiki"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["details"]["reason"] == "private address"
    assert connections_refused == [] and not Attachment.objects.exists()


@pytest.mark.parametrize("body", [{"url": "file:///etc/passwd"}, {"url": 5}, {"link": "http://x"}, [], {"url": "http://[::1]/"}])
def test_it_refuses_bad_url_bodies(owner_api, conv, body):
    response = owner_api.post(BASE, body, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_MESSAGE"
    assert not Attachment.objects.exists()


@pytest.mark.parametrize(("name", "data"), [
    ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00"), ("report.pdf", b"%PDF-1.7 broken"), ("data.json", b"{nope"),
    ("bin.txt", b"\x00\x01\x02"), ("empty.txt", b""),
])
def test_an_unreadable_file_is_refused_and_nothing_is_stored(owner_api, conv, name, data):
    version = Conversation.objects.get(pk=conv.pk).version
    response = post_file(owner_api, name, data)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "INVALID_MESSAGE" and response.json()["error"]["details"]["field"] == "file"
    assert not Attachment.objects.exists()
    assert Conversation.objects.get(pk=conv.pk).version == version


def test_it_wants_exactly_one_file_field(owner_api, conv):
    response = owner_api.post(BASE, {"other": upload("a.txt", "x")}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["details"]["field"] == "file"


def test_a_file_over_the_size_limit_is_413(owner_api, conv, settings):
    settings.CHATLIMA_ATTACHMENT_MAX_BYTES = 100
    response = post_file(owner_api, "big.txt", "x" * 101)
    assert response.status_code == 413 and response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert response.json()["error"]["details"]["max_bytes"] == 100
    assert post_file(owner_api, "fits.txt", "x" * 100).status_code == 201


def test_a_page_over_the_fetch_limit_is_413(owner_api, conv, settings, site, allow_private):
    settings.CHATLIMA_FETCH_MAX_BYTES = 1000
    url = site.page("/big.txt", "y" * 5000, "text/plain", chunked=True)
    response = owner_api.post(BASE, {"url": url}, format="json")
    assert response.status_code == 413 and not Attachment.objects.exists()


def test_it_limits_attachments_per_conversation(owner_api, conv, settings):
    settings.CHATLIMA_ATTACHMENTS_PER_CONVERSATION = 2
    assert post_file(owner_api, "1.txt", "one").status_code == 201
    assert post_file(owner_api, "2.txt", "two").status_code == 201
    response = post_file(owner_api, "3.txt", "three")
    assert response.status_code == 400 and response.json()["error"]["details"]["max_attachments"] == 2
    assert Attachment.objects.count() == 2


def test_it_limits_the_tokens_of_a_conversations_attachments(owner_api, conv, settings):
    from usage.tokens import count_tokens

    one, two = "alpha beta gamma delta " * 3, "epsilon zeta eta theta " * 3
    limit = count_tokens(one, "gpt-4o") + count_tokens(two, "gpt-4o") - 1  # the two together are one over
    settings.CHATLIMA_ATTACHMENT_MAX_TOKENS = limit
    first = post_file(owner_api, "1.txt", one)
    assert first.status_code == 201
    response = post_file(owner_api, "2.txt", two)
    assert response.status_code == 413 and response.json()["error"]["details"]["max_tokens"] == limit
    assert Attachment.objects.count() == 1
    # Room comes back when one is removed.
    owner_api.delete(f"{BASE}/{first.json()['id']}")
    assert post_file(owner_api, "2.txt", two).status_code == 201


def test_remove_deletes_it(owner_api, conv):
    attachment_id = post_file(owner_api, "a.txt", "text").json()["id"]
    response = owner_api.delete(f"{BASE}/{attachment_id}")
    assert response.status_code == 204
    assert not Attachment.objects.exists()
    again = owner_api.delete(f"{BASE}/{attachment_id}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "NOT_FOUND"


def test_a_stranger_gets_404_on_every_route(owner_api, stranger_api, stranger, conv):
    attachment_id = post_file(owner_api, "a.txt", "secret plans").json()["id"]
    # The stranger has a conversation with the same id: still not the owner's.
    Conversation.objects.create(owner=stranger, public_id="conv_other")
    answers = [
        stranger_api.get(BASE),
        stranger_api.post(BASE, {"file": upload("b.txt", "mine now")}, format="multipart"),
        stranger_api.post(BASE, {"url": "http://127.0.0.1/"}, format="json"),
        stranger_api.delete(f"{BASE}/{attachment_id}"),
        stranger_api.post(f"{BASE}/{attachment_id}/refetch"),
        stranger_api.get("/api/v1/conversations/conv_other/attachments"),
        stranger_api.delete(f"/api/v1/conversations/conv_other/attachments/{attachment_id}"),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404, 404, 404, 200, 404]
    assert all(a.json()["error"]["code"] == "CONVERSATION_NOT_FOUND" for a in answers[:5])
    assert answers[5].json() == {"results": []}
    assert list(Attachment.objects.values_list("name", "conversation__owner__username")) == [("a.txt", "owner")]


def test_it_needs_credentials(conv):
    anonymous = APIClient()
    assert anonymous.get(BASE).status_code == 401
    response = anonymous.post(BASE, {"file": upload("a.txt", "x")}, format="multipart")
    assert response.status_code == 401 and response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert not Attachment.objects.exists()


def test_unknown_ids_are_404(owner_api, conv):
    assert owner_api.get("/api/v1/conversations/conv_nope/attachments").status_code == 404
    assert owner_api.delete(f"{BASE}/att_nope").status_code == 404
    assert owner_api.delete(f"{BASE}/bad%0Aid").status_code == 404


def test_attachments_are_deleted_with_their_conversation(owner_api, conv):
    post_file(owner_api, "a.txt", "text")
    assert owner_api.delete("/api/v1/conversations/conv_a").status_code == 204
    assert not Attachment.objects.exists()
    assert owner_api.get(BASE).status_code == 404


def test_attachments_are_deleted_when_a_push_deletes_the_conversation(owner_api, conv):
    post_file(owner_api, "a.txt", "text")
    keep = Conversation.objects.create(owner=conv.owner, public_id="conv_keep")
    Attachment.objects.create(owner=conv.owner, conversation=keep, kind="file", name="k.txt", text="kept")
    response = owner_api.post("/api/v1/sync", {"conversations": [], "deleted": ["conv_a"]}, format="json")
    assert response.status_code == 200, response.content
    assert list(Attachment.objects.values_list("name", flat=True)) == ["k.txt"]


def test_a_hard_deleted_conversation_takes_its_attachments(owner_api, conv):
    post_file(owner_api, "a.txt", "text")
    conv.delete()
    assert not Attachment.objects.exists()


def test_the_sync_pull_leaves_attachments_out(owner_api, conv):
    post_file(owner_api, "a.txt", "the attached text")
    conversations, _, _ = pull_all(owner_api)
    [pulled] = conversations
    assert pulled["id"] == "conv_a"
    assert "attachments" not in pulled and "the attached text" not in str(pulled)


def test_the_sync_pull_lists_them_when_asked(owner_api, stranger_api, conv):
    attachment_id = post_file(owner_api, "a.txt", "the attached text").json()["id"]
    assert owner_api.post("/api/v1/conversations", {"id": "conv_plain"}, format="json").status_code == 201
    pulled = owner_api.get("/api/v1/sync", {"attachments": 1}).json()["conversations"]
    by_id = {c["id"]: c for c in pulled}
    assert [a["id"] for a in by_id["conv_a"]["attachments"]] == [attachment_id]
    assert by_id["conv_a"]["attachments"][0]["name"] == "a.txt" and "text" not in by_id["conv_a"]["attachments"][0]
    assert by_id["conv_plain"]["attachments"] == []
    assert stranger_api.get("/api/v1/sync", {"attachments": 1}).json()["conversations"] == []
    assert owner_api.get("/api/v1/sync", {"attachments": 2}).status_code == 400


def test_the_schema_describes_the_attachment_routes(owner_api):
    paths = owner_api.get("/api/v1/schema/?format=json").json()["paths"]
    create = paths["/api/v1/conversations/{public_id}/attachments"]["post"]
    assert set(create["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"201", "400", "401", "404", "413"} <= set(create["responses"])
    assert "get" in paths["/api/v1/conversations/{public_id}/attachments"]
    assert "204" in paths["/api/v1/conversations/{public_id}/attachments/{attachment_id}"]["delete"]["responses"]
    assert "post" in paths["/api/v1/conversations/{public_id}/attachments/{attachment_id}/refetch"]


def test_adding_an_attachment_moves_the_sync_clock(owner_api, conv):
    _, _, cursor = pull_all(owner_api)
    post_file(owner_api, "a.txt", "text")
    conversations, _, _ = pull_all(owner_api, cursor)
    assert [c["id"] for c in conversations] == ["conv_a"]
