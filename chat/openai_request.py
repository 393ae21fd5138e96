"""OpenAI's chat-completions request body, checked: what the /v1 door (chat/openai_door.py) needs of
it. Pure validation, no database; every refusal is INVALID_MESSAGE naming the field as OpenAI
names it (`messages[2].content`), which the door answers as a 400 with that `param`."""

from __future__ import annotations

from typing import Any

from chat.providers.base import Turn
from chatlima.errors import ClientError
from chatlima.text import unstorable_character


def refuse(message: str, param: str | None) -> ClientError:
    return ClientError("INVALID_MESSAGE", message, {"field": param} if param else {})


def _text_of(content: Any, param: str) -> str:
    """A message's text: a string, or a list of text parts (OpenAI's content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise refuse("Only text content parts are supported.", param)
            texts.append(part["text"])
        return "".join(texts)
    raise refuse(f"{param} must be a string or a list of text parts.", param)


def parse_messages(messages: Any) -> tuple[str, tuple[Turn, ...], str]:
    """(the last user message, the earlier turns, the system prompt) of OpenAI's `messages`."""
    if not isinstance(messages, list) or not messages:
        raise refuse("messages must be a non-empty list.", "messages")
    system: list[str] = []
    turns: list[Turn] = []
    for index, entry in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(entry, dict):
            raise refuse(f"{param} must be an object.", param)
        role = entry.get("role")
        text = _text_of(entry.get("content"), f"{param}.content")
        bad = unstorable_character(text)
        if bad is not None:
            raise refuse(f"{param}.content must not contain {bad}.", f"{param}.content")
        if role in ("system", "developer"):
            system.append(text)
        elif role in ("user", "assistant"):
            turns.append(Turn(role=role, content=text))
        else:
            raise refuse(f"{param}.role must be system, developer, user or assistant.", f"{param}.role")
    if not turns or turns[-1].role != "user":
        raise refuse("The last message must be the user's.", "messages")
    return turns[-1].content, tuple(turns[:-1]), "\n\n".join(system)


def _whole(value: Any, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(f"{param} must be a whole number.", param)
    return value


def parse_request(body: Any) -> dict[str, Any]:
    """OpenAI's chat-completions body, checked: what the door needs of it."""
    if not isinstance(body, dict):
        raise refuse("The body must be a JSON object.", None)
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise refuse("model is required.", "model")
    message, history, system = parse_messages(body.get("messages"))
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise refuse("stream must be a boolean.", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise refuse("stream_options must be an object.", "stream_options")
    n = body.get("n")
    if n not in (None, 1):
        raise refuse("Only n=1 is supported.", "n")
    max_tokens = _whole(body.get("max_completion_tokens"), "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _whole(body.get("max_tokens"), "max_tokens")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise refuse("user must be a string.", "user")
    send = {"message": message, "model": model.strip(), "temperature": body.get("temperature"),
            "max_tokens": max_tokens}
    return {"send": send, "history": history, "system": system, "stream": stream,
            "include_usage": options.get("include_usage") is True, "user": user or ""}
