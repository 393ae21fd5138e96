"""Sync under real concurrency: two devices pushing at once, a pull paging while another device pushes.

These need a server database with row locks and concurrent connections (PostgreSQL, as in CI);
SQLite's in-memory test database cannot host writers on several threads.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections

from chat import sync_clock
from chat.models import Conversation, Message
from tests.api.conftest import make_conversation
from tests.conftest import bearer_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL for concurrent writers"),
]


@pytest.fixture(autouse=True)
def _no_throttle(monkeypatch):
    # The reader polls as fast as it can; the throttle is not what these tests are about.
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "sync", "100000/min")
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "user", "100000/min")


def _in_thread(target, results, key):
    def run():
        try:
            results[key] = target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[key] = exc
        finally:
            connections.close_all()

    return threading.Thread(target=run)


def test_two_devices_pushing_at_once_both_land_and_the_later_title_wins(owner):
    phone, tablet = bearer_client(owner), bearer_client(owner)
    shared_phone = make_conversation("conv_shared", 2, updated="2025-07-22T15:00:00.000Z")
    shared_phone["title"] = "from the phone"
    shared_tablet = make_conversation("conv_shared", 4, updated="2025-07-22T16:00:00.000Z")
    shared_tablet["title"] = "from the tablet"
    bodies = {
        "phone": {"conversations": [shared_phone, make_conversation("conv_phone", 6)]},
        "tablet": {"conversations": [make_conversation("conv_tablet", 6), shared_tablet]},
    }
    barrier = threading.Barrier(2)
    results: dict = {}

    def pusher(client, body):
        def go():
            barrier.wait()
            return client.post("/api/v1/sync", body, format="json")

        return go

    threads = [
        _in_thread(pusher(phone, bodies["phone"]), results, "phone"),
        _in_thread(pusher(tablet, bodies["tablet"]), results, "tablet"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [results[k].status_code for k in ("phone", "tablet")] == [200, 200], results
    shared = Conversation.objects.get(owner=owner, public_id="conv_shared")
    assert shared.title == "from the tablet"
    assert shared.messages.count() == 4 == shared.message_count
    assert set(Conversation.objects.filter(owner=owner).values_list("public_id", flat=True)) == {
        "conv_shared", "conv_phone", "conv_tablet",
    }
    assert Message.objects.filter(owner=owner).count() == 16
    assert sync_clock.current(owner.pk) == 2
    # Exactly one of them created the shared conversation. If the tablet came second its newer
    # title and extra messages updated it; if the phone came second it had nothing new to add.
    phone_status = results["phone"].json()["conversations"][0]["status"]
    tablet_status = results["tablet"].json()["conversations"][1]["status"]
    assert (phone_status, tablet_status) in {("created", "updated"), ("unchanged", "created")}


def test_a_pull_paging_while_another_device_pushes_misses_nothing_and_repeats_nothing(owner):
    reader, writer = bearer_client(owner), bearer_client(owner)
    batches = [[make_conversation(f"conv_{b:02d}_{k}", 2) for k in range(5)] for b in range(30)]
    expected = {c["id"] for batch in batches for c in batch}
    done = threading.Event()
    results: dict = {}

    def push_all():
        try:
            for batch in batches:
                response = writer.post("/api/v1/sync", {"conversations": batch}, format="json")
                assert response.status_code == 200, response.content
            return True
        finally:
            done.set()

    thread = _in_thread(push_all, results, "writer")
    thread.start()
    seen: list[str] = []
    since = None
    pulls_while_writing = 0
    while True:
        pulls_while_writing += not done.is_set()
        params = {"limit": 7, **({"since": since} if since else {})}
        response = reader.get("/api/v1/sync", params)
        assert response.status_code == 200, response.content
        data = response.json()
        seen += [c["id"] for c in data["conversations"]]
        since = data["cursor"]
        if not data["has_more"] and not done.is_set():
            time.sleep(0.005)  # caught up: give the writer a moment
        if not data["has_more"] and done.is_set():
            # One more pull after the writer is done: anything committed since the cursor comes now.
            final = reader.get("/api/v1/sync", {"since": since, "limit": 500}).json()
            seen += [c["id"] for c in final["conversations"]]
            assert final["has_more"] is False
            break
    thread.join(30)
    assert results["writer"] is True, results
    assert pulls_while_writing > 1, "the pull never overlapped the pushes"
    assert len(seen) == len(set(seen)), "a conversation came twice"
    assert set(seen) == expected
