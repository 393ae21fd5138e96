"""The official `openai` SDK against ChatLima's /v1 door on a real daphne: every path of the door,
each checked against the usage row the exchange left."""

from __future__ import annotations

import time
from decimal import Decimal

import openai
import pytest

from tests.openai_door.conftest import FAKE_USAGE, MODEL


def client(door, token: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{door.base}/v1", api_key=token, max_retries=0, timeout=20, **kwargs)


def rows(e2e_db, username: str) -> list[dict]:
    return e2e_db.rows(
        "SELECT l.* FROM api_usage_logs l JOIN accounts_user u ON u.id = l.user_id WHERE u.username = %s "
        "ORDER BY l.created_at", username)


def metadata(row: dict) -> dict:
    import json

    value = row["metadata"]
    return value if isinstance(value, dict) else json.loads(value)


def budget(e2e_db, username: str) -> dict:
    return e2e_db.rows("SELECT b.* FROM accounts_budget b JOIN accounts_user u ON u.id = b.user_id "
                       "WHERE u.username = %s", username)[0]


def wait_settled(e2e_db, username: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        found = rows(e2e_db, username)
        if len(found) >= count and all(r["status"] != "pending" for r in found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"usage rows never settled: {found}")
        time.sleep(0.05)


def test_a_completion_carries_the_usage_rows_figures_and_cost(door, e2e_db, fake_openai_door):
    token = door.register("door-plain")
    answer = client(door, token).chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}])
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == "".join(f"Fake word {i}. " for i in range(12))
    assert answer.choices[0].finish_reason == "stop"
    [row] = wait_settled(e2e_db, "door-plain", 1)
    assert row["status"] == "success" and row["model_name"] == MODEL
    usage = answer.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (FAKE_USAGE["prompt_tokens"], FAKE_USAGE["completion_tokens"])
    assert usage.total_tokens == row["total_tokens"] == 78
    assert usage.prompt_tokens_details.cached_tokens == row["cached_tokens"] == 9
    assert usage.completion_tokens_details.reasoning_tokens == row["reasoning_tokens"] == 12
    cost = usage.model_extra["cost"]
    assert Decimal(cost["estimated"]) == Decimal(str(row["cost_estimate"])) > 0
    assert metadata(row)["door"] == "openai"
    assert answer.model_extra["chatlima"]["request_id"] == row["request_id"]
    # The whole history went to the provider: the system prompt and the message.
    sent = fake_openai_door.last_request().json
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1] == {"role": "user", "content": "Hi there"}


def test_a_stream_with_include_usage_ends_with_the_rows_figures(door, e2e_db, fake_openai_door):
    token = door.register("door-stream")
    stream = client(door, token).chat.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "First"}, {"role": "assistant", "content": "An earlier answer"},
                  {"role": "user", "content": "Second question"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"Fake word {i}. " for i in range(12))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    [row] = wait_settled(e2e_db, "door-stream", 1)
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        row["prompt_tokens"], row["completion_tokens"], row["total_tokens"])
    assert usage.prompt_tokens_details.cached_tokens == row["cached_tokens"]
    assert usage.completion_tokens_details.reasoning_tokens == row["reasoning_tokens"]
    sent = fake_openai_door.last_request().json["messages"]
    assert [m["content"] for m in sent] == ["First", "An earlier answer", "Second question"]


def test_a_stream_without_include_usage_has_no_usage_chunk(door, e2e_db):
    token = door.register("door-stream-bare")
    chunks = list(client(door, token).chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "Hello"}]))
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    assert len(wait_settled(e2e_db, "door-stream-bare", 1)) == 1


def test_closing_the_stream_midway_settles_cancelled_and_releases_the_hold(door, e2e_db):
    token = door.register("door-cancel")
    stream = client(door, token).chat.completions.create(
        model="offline-demo", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Tell me a long story please"}])
    seen = ""
    for chunk in stream:
        seen += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if len(seen.split()) >= 3:
            break
    stream.close()
    [row] = wait_settled(e2e_db, "door-cancel", 1)
    assert row["status"] == "cancelled"
    assert row["completion_tokens"] > 0  # what arrived is charged (estimated)
    held = budget(e2e_db, "door-cancel")
    assert held["tokens_held"] == 0
    assert held["tokens_used"] == row["total_tokens"]  # only what arrived is charged


def test_a_budget_refusal_is_a_403_the_sdk_raises_as_permission_denied(door, e2e_db):
    token = door.register("door-broke")
    e2e_db.execute("UPDATE accounts_budget SET token_limit = 10 WHERE user_id = "
                   "(SELECT id FROM accounts_user WHERE username = %s)", "door-broke")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(door, token).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 403
    assert refused.value.body["code"] == "budget_exceeded"
    with pytest.raises(openai.PermissionDeniedError):
        list(client(door, token).chat.completions.create(
            model=MODEL, stream=True, messages=[{"role": "user", "content": "Hi"}]))
    assert rows(e2e_db, "door-broke") == []  # refused before any provider call: no row


def test_an_unknown_model_is_a_404_not_found(door, e2e_db):
    token = door.register("door-model")
    with pytest.raises(openai.NotFoundError) as refused:
        client(door, token).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.body["code"] == "model_not_found" and refused.value.body["param"] == "model"
    assert rows(e2e_db, "door-model") == []


def test_a_bad_token_is_a_401(door):
    with pytest.raises(openai.AuthenticationError) as refused:
        client(door, "not-a-real-token").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client(door, "not-a-real-token").models.list()


def test_a_bad_request_is_a_400_naming_the_field(door, e2e_db):
    token = door.register("door-bad")
    with pytest.raises(openai.BadRequestError) as refused:
        client(door, token).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes?"}])
    assert refused.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        client(door, token).chat.completions.create(model=MODEL, messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as refused:
        client(door, token).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                    max_tokens=0)
    assert refused.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as refused:
        client(door, token).chat.completions.create(
            model=MODEL, messages=[{"role": "assistant", "content": "a\x00b"}, {"role": "user", "content": "Hi"}])
    assert refused.value.body["param"] == "messages[0].content"
    assert rows(e2e_db, "door-bad") == []


def test_an_upstream_failure_keeps_its_status_for_the_clients_retry(door, e2e_db, fake_openai_door):
    token = door.register("door-upstream")
    fake_openai_door.fail_next(429)
    with pytest.raises(openai.RateLimitError):
        client(door, token).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    fake_openai_door.fail_next(500)
    with pytest.raises(openai.InternalServerError) as failed:
        list(client(door, token).chat.completions.create(
            model=MODEL, stream=True, messages=[{"role": "user", "content": "Hi"}]))
    assert failed.value.status_code == 502
    found = wait_settled(e2e_db, "door-upstream", 2)
    assert [r["status"] for r in found] == ["rate_limited", "error"]
    assert budget(e2e_db, "door-upstream")["tokens_held"] == 0


def test_models_are_the_usable_catalogue(door):
    token = door.register("door-models")
    listed = {m.id: m for m in client(door, token).models.list()}
    assert "offline-demo" in listed and MODEL in listed
    assert listed[MODEL].object == "model" and listed[MODEL].owned_by == "openai"


def test_one_row_per_request_and_one_conversation_per_client_id(door, e2e_db):
    token = door.register("door-thread")
    sdk = client(door, token)
    history = [{"role": "user", "content": "One"}]
    for turn in ("Two", "Three"):
        answer = sdk.chat.completions.create(model=MODEL, messages=history, user="thread-a")
        history += [{"role": "assistant", "content": answer.choices[0].message.content}, {"role": "user", "content": turn}]
    sdk.chat.completions.create(model=MODEL, messages=history, extra_headers={"X-ChatLima-Conversation": "thread-a"})
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Alone"}])
    found = wait_settled(e2e_db, "door-thread", 4)
    assert len(found) == 4
    conversations = [r["conversation_id"] for r in found]
    assert conversations[0] == conversations[1] == conversations[2] != conversations[3]
    stored = e2e_db.rows("SELECT public_id, title, message_count FROM chat_conversation WHERE id = %s", conversations[0])[0]
    assert stored["message_count"] == 6 and stored["title"].startswith("API: token ")
    alone = e2e_db.rows("SELECT title FROM chat_conversation WHERE id = %s", conversations[3])[0]
    assert alone["title"].startswith("API: token ") and alone["title"].endswith("· Alone")


def test_a_strangers_same_client_id_is_another_conversation(door, e2e_db):
    mine, theirs = door.register("door-owner"), door.register("door-stranger")
    client(door, mine).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Mine"}],
                                               user="shared-id")
    client(door, theirs).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Theirs"}],
                                                 user="shared-id")
    [my_row] = wait_settled(e2e_db, "door-owner", 1)
    [their_row] = wait_settled(e2e_db, "door-stranger", 1)
    assert my_row["conversation_id"] != their_row["conversation_id"]
    owners = e2e_db.rows("SELECT c.id, u.username FROM chat_conversation c JOIN accounts_user u ON u.id = c.owner_id "
                         "WHERE c.id IN (%s, %s) ORDER BY u.username", my_row["conversation_id"], their_row["conversation_id"])
    assert [o["username"] for o in owners] == ["door-owner", "door-stranger"]
    messages = e2e_db.rows("SELECT content FROM chat_message WHERE conversation_id = %s AND role = 'user'",
                           their_row["conversation_id"])
    assert [m["content"] for m in messages] == ["Theirs"]


def test_a_provider_that_never_answers_is_a_504(door, e2e_db, fake_openai_door):
    token = door.register("door-stall")
    fake_openai_door.stall_next(8)
    with pytest.raises(openai.InternalServerError) as failed:
        client(door, token).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert failed.value.status_code == 504 and failed.value.body["code"] == "upstream_timeout"
    [row] = wait_settled(e2e_db, "door-stall", 1)
    assert row["status"] == "timeout"
    assert budget(e2e_db, "door-stall")["tokens_held"] == 0


def test_a_stream_broken_after_its_first_words_ends_with_an_error_the_sdk_raises(door, e2e_db, fake_openai_door):
    token = door.register("door-broken")
    fake_openai_door.disconnect_after(3)
    seen = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in client(door, token).chat.completions.create(
                model=MODEL, stream=True, messages=[{"role": "user", "content": "Hi"}]):
            seen.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(seen).startswith("Fake word 0.")
    assert failed.value.body["code"] == "upstream_error" and failed.value.body["type"] == "api_error"
    [row] = wait_settled(e2e_db, "door-broken", 1)
    assert row["status"] == "error"
    assert budget(e2e_db, "door-broken")["tokens_held"] == 0
