"""OpenAI's request body as the /v1 door reads it (pure parsing, no server)."""

from __future__ import annotations

import pytest

from chat.openai_request import parse_request
from chat.providers.base import Turn
from chatlima.errors import ClientError


def test_the_last_user_message_is_the_message_and_the_rest_is_history_and_system_prompt():
    parsed = parse_request({
        "model": " gpt-4o ", "max_tokens": 50, "max_completion_tokens": 70, "temperature": 0.3, "user": "u-1",
        "stream": True, "stream_options": {"include_usage": True},
        "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": [{"type": "text", "text": "How far "}, {"type": "text", "text": "is it?"}]},
            {"role": "assistant", "content": "Ten miles."}, {"role": "user", "content": "In km?"},
        ],
    })
    assert parsed["send"] == {"message": "In km?", "model": "gpt-4o", "temperature": 0.3, "max_tokens": 70}
    assert parsed["history"] == (Turn("user", "How far is it?"), Turn("assistant", "Ten miles."))
    assert parsed["system"] == "Be brief.\n\nUse metric units."
    assert (parsed["stream"], parsed["include_usage"], parsed["user"]) == (True, True, "u-1")


@pytest.mark.parametrize("body, param", [
    ([], None),
    ({"messages": [{"role": "user", "content": "Hi"}]}, "model"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": "Hi"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": "a\ud800"}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "n": 2}, "n"),
    ({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "stream": "yes"}, "stream"),
    ({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1.5}, "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "Hi"}], "user": 7}, "user"),
])
def test_a_bad_body_is_refused_naming_the_field(body, param):
    with pytest.raises(ClientError) as refused:
        parse_request(body)
    assert refused.value.code == "INVALID_MESSAGE"
    assert refused.value.details.get("field") == param
