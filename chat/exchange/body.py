"""The send body of /api/v1/chat/send, /api/v1/chat/stream and the WebSocket's `send_message` frame.

`SendBody` is its one definition: `parse_send_body` validates a body with it and chat/openapi.py
documents it as the schema's `SendMessage`, so the two cannot disagree.
Pure validation, no database. Every refusal is INVALID_MESSAGE naming the field (API.md "Error
codes"); a null field is an absent one; strings holding NUL or lone surrogates are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from django.conf import settings
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError, core_schema

from chat.ids import ID_RULE, ID_SCHEMA_PATTERN, is_valid_id
from chatlima.errors import ClientError
from chatlima.text import NO_NUL_PATTERN, NOT_BLANK_PATTERN, is_blank, unstorable_character

MODEL_ID_CHARS = 128  # Conversation.model's column
SYSTEM_PROMPT_CHARS = 32_000
MAX_TOKENS_LIMIT = 1_000_000

# What each refusal says, by the rule that refused; `{field}` is the field's path.
RULES = {
    "model_type": "The body must be a JSON object.",
    "missing": "The message is empty.",  # `message` is the one required field
    "empty": "The message is empty.",
    "message_too_long": "The message is over {max_chars:,} characters.",
    "too_long": "{field} is over {max_chars:,} characters.",
    "unstorable": "{field} must not contain {bad}.",
    "text": "{field} must be text.",
    "non_blank_text": "{field} must be non-blank text.",
    "id": "{field}: " + ID_RULE,
    "temperature": "temperature must be a number from 0 to 2.",
    "max_tokens": f"max_tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT}.",
    "list": "{field} must be a list.",
    "object": "{field} must be an object.",
}


def _refused_as(rule: str) -> WrapValidator:
    """Any failure of the single value this wraps (a wrong type, a number out of range) is refused
    by `rule`."""

    def refuse(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(rule, rule) from None

    return WrapValidator(refuse)


def _only(kind: type, rule: str) -> BeforeValidator:
    """A container of `kind`, else refused by `rule` (what it holds is checked entry by entry)."""

    def check(value: Any) -> Any:
        if not isinstance(value, kind):
            raise PydanticCustomError(rule, rule)
        return value

    return BeforeValidator(check)


@dataclass(frozen=True)
class Checked:
    """A string `test` accepts, else refused by `rule`; the schema says the same as `pattern`."""

    test: Callable[[str], bool]
    rule: str
    pattern: str

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Callable) -> dict:
        return {**handler(schema), "pattern": self.pattern}

    def _check(self, value: str) -> str:
        if not self.test(value):
            raise PydanticCustomError(self.rule, self.rule)
        return value


@dataclass(frozen=True)
class MaxChars:
    """At most `chars` characters (a callable is read at each use: a setting), else refused by
    `rule` with `max_chars` in the details."""

    chars: int | Callable[[], int]
    rule: str = "too_long"

    def limit(self) -> int:
        return self.chars() if callable(self.chars) else self.chars

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Callable) -> dict:
        return {**handler(schema), "maxLength": self.limit()}

    def _check(self, value: str) -> str:
        if len(value) > self.limit():
            raise PydanticCustomError(self.rule, self.rule, {"max_chars": self.limit()})
        return value


class Storable:
    """No character a column cannot store (NUL, a lone surrogate); the schema can say NUL only."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Callable) -> dict:
        return {"pattern": NO_NUL_PATTERN, **handler(schema)}

    @staticmethod
    def _check(value: str) -> str:
        bad = unstorable_character(value)
        if bad is not None:
            raise PydanticCustomError("unstorable", "unstorable", {"bad": bad})
        return value


def _message_chars() -> int:
    return settings.CHATLIMA_MAX_MESSAGE_CHARS


Text = Annotated[str, _refused_as("text")]
PublicId = Annotated[str, _refused_as("id"), Checked(is_valid_id, "id", ID_SCHEMA_PATTERN)]
MessageText = Annotated[
    str, _refused_as("empty"), Checked(lambda text: not is_blank(text), "empty", NOT_BLANK_PATTERN),
    MaxChars(_message_chars, "message_too_long"), Storable(), Field(min_length=1, description="Not blank."),
]
ModelId = Annotated[
    str, _refused_as("non_blank_text"), Checked(lambda text: not is_blank(text), "non_blank_text", NOT_BLANK_PATTERN),
    MaxChars(MODEL_ID_CHARS), Storable(),
]


class SeedEntry(BaseModel):
    """One entry of the seed-000 `messages` list (other keys, such as its timestamp, are ignored)."""

    model_config = ConfigDict(strict=True, frozen=True)

    role: Text | None = None
    content: Text | None = None
    id: PublicId | None = None


def _one_of_message_or_regenerate(schema: dict) -> None:
    """The schema of what `_versions_rule` enforces: `message` (text, never null) is required unless
    the body regenerates an answer (`regenerate`, an id, never null)."""
    props = schema["properties"]
    for name in ("message", "regenerate"):
        own = {key: value for key, value in props[name].items() if key not in ("anyOf", "nullable", "default")}
        branches = props[name].get("anyOf") or [props[name]]
        text = next(branch for branch in branches if branch.get("type") != "null")
        props[name] = {**{k: v for k, v in text.items() if k not in ("nullable", "default")}, **own}
    schema["anyOf"] = [{"required": ["message"]}, {"required": ["regenerate"]}]


class SendBody(BaseModel):
    """The contract's send body, or the seed-000 one (`message`, `messages`, `model`), plus
    ChatLima's `regenerate` and `edit_of` (chat/exchange/versions.py)."""

    # Fields are checked in this order; the first refusal is the one reported.
    messages: Annotated[
        Annotated[list[Annotated[SeedEntry, _only(dict, "object")]], _only(list, "list")] | None,
        Field(description="Seed-000 form: the last user entry's id becomes client_message_id."),
    ] = None
    message: Annotated[MessageText | None, Field(description="Required, except with `regenerate`.")] = None
    conversation_id: Annotated[PublicId | None, Field(description="Absent: a new conversation.")] = None
    client_message_id: Annotated[
        PublicId | None, Field(description="Id for the user message; a known one replays the stored result."),
    ] = None
    model: Annotated[
        ModelId | None, Field(description="A model id of GET /api/v1/models; another is MODEL_UNAVAILABLE."),
    ] = None
    temperature: Annotated[float, Field(ge=0, le=2), _refused_as("temperature")] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT), _refused_as("max_tokens")] | None = None
    system_prompt: Annotated[
        Annotated[Text, MaxChars(SYSTEM_PROMPT_CHARS), Storable()] | None,
        Field(description="Only when creating the conversation."),
    ] = None
    regenerate: Annotated[
        PublicId | None,
        Field(description="Ask again: the id of a live assistant answer to replace with a new version (no "
                          "`message`; `client_message_id` is this exchange's request id)."),
    ] = None
    edit_of: Annotated[
        PublicId | None,
        Field(description="Edit and resend: the id of a live user message that `message` replaces; the "
                          "conversation continues from the edited message."),
    ] = None

    model_config = ConfigDict(strict=True, frozen=True, json_schema_extra=_one_of_message_or_regenerate)

    @model_validator(mode="before")
    @classmethod
    def _seed_000(cls, body: Any) -> Any:
        """The seed-000 form: the last user entry of `messages` gives the message and its id when
        the body names none (the entries themselves are checked as the `messages` field)."""
        entries = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            return body
        last = next((e for e in reversed(entries) if isinstance(e, dict) and e.get("role") == "user"), None)
        if last is None:
            return body
        return {
            **body,
            "message": last.get("content") if body.get("message") is None else body["message"],
            "client_message_id": last.get("id") if body.get("client_message_id") is None else body["client_message_id"],
        }


def _path(loc: tuple) -> str:
    """A pydantic error location as the API names fields: `messages[0].id`; the body itself is `body`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "body"


def _versions_rule(req: SendBody) -> SendBody:
    """What a schema field cannot say alone: a message is needed unless regenerating, where none is
    taken (the same question is asked again), and one body does not both regenerate and edit."""
    if req.regenerate is not None:
        if req.edit_of is not None:
            raise ClientError("INVALID_MESSAGE", "A send either regenerates an answer or edits a message, not both.",
                              {"field": "regenerate"})
        if req.message is not None or req.messages is not None:
            raise ClientError("INVALID_MESSAGE", "regenerate asks the same question again: send no message.",
                              {"field": "regenerate"})
    elif req.message is None:
        raise ClientError("INVALID_MESSAGE", RULES["missing"], {"field": "message"})
    return req


def parse_send_body(body: Any) -> SendBody:
    """A validated send body, or ClientError INVALID_MESSAGE naming the first refused field."""
    try:
        return _versions_rule(SendBody.model_validate(body))
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field, context = _path(error["loc"]), error.get("ctx") or {}
        details = {"field": field}
        if "max_chars" in context:
            details["max_chars"] = context["max_chars"]
        rule = RULES.get(error["type"], "{field} is not valid.")
        raise ClientError("INVALID_MESSAGE", rule.format(field=field, **context), details) from None
