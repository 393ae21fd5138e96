"""The sync push body: pydantic models that both validate it and describe it in the OpenAPI schema.

`parse_push` checks a body whole before anything is written, or raises one INVALID_MESSAGE whose
details name every bad item by its path (`conversations[2].messages[3].content`), keeping the
contract's wording of each refusal. It reads no database and takes no lock; the checks that need
stored rows are `chat.sync.push`'s. Whatever passes fits its column on every backend: dates are
within 1970-2100 (UTC), strings hold no NUL and no lone surrogate, figures fit a
PositiveIntegerField. Its cost is linear in the body. The mobile client's camelCase names are the
aliases; chat.openapi turns the models into the schema's SyncPushRequest and its parts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, PlainValidator, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from chat.ids import ID_RULE, ID_SCHEMA_PATTERN
from chatlima.errors import ClientError
from chatlima.text import NO_NUL_PATTERN, unstorable_character

# Assistant answers may be long; this only guards against absurd bodies.
MAX_CONTENT_CHARS = 200_000
MAX_TITLE_CHARS = 255
MAX_MODEL_CHARS = 128
MAX_TOKENS = 2_147_483_647  # the PositiveIntegerField ceiling on every backend
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens", "cached_tokens")

# A date outside these stores on PostgreSQL (year 1 BC, year 10000) but cannot be read back
# into Python, so one push would break every later read of the account.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
# Years 1970 to 2100 in the schema (the server also refuses the few instants an offset puts outside).
SYNC_YEARS_PATTERN = r"^(19[7-9][0-9]|20[0-9][0-9]|2100)-"

# The contract's wording of each refusal.
ROLE_RULE = "One of user, assistant, system."
TIME_RULE = "Must be an ISO 8601 timestamp."
DATE_RANGE_RULE = "Dates are between 1970-01-01T00:00:00Z and 2100-12-31T23:59:59Z."
# pydantic's error types: RULE carries its wording as its message; TEXT and FIGURE are worded from
# the refused value (`_wording`); the others are the structure's (a field absent, a wrong container).
RULE, TEXT, FIGURE = "sync_rule", "sync_text", "sync_figure"
REQUIRED_WORDING = {"id": ID_RULE, "role": ROLE_RULE}
STRUCTURE_WORDING = {"list_type": "Must be a list.", "model_type": "Must be an object."}

SYNC_DATE = "ISO 8601, from 1970-01-01T00:00:00Z to 2100-12-31T23:59:59Z."
SYNC_TEXT = "No NUL characters or lone surrogates."
DERIVED = "Derived by the server: whatever the client sends here is ignored (API.md)."


@dataclass(frozen=True)
class Refused:
    """Annotated metadata: whatever fails the annotated type (pydantic checks it, in Rust) is one
    error of type `kind` whose message is `wording`."""

    wording: str
    kind: str = RULE
    max_length: int | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.custom_error_schema(
            handler(source),
            custom_error_type=self.kind,
            custom_error_message=self.wording,
            custom_error_context=None if self.max_length is None else {"max_length": self.max_length},
        )


def parse_sync_time(value: Any) -> datetime:
    """An ISO 8601 timestamp within 1970-2100, in UTC (a naive one is UTC)."""
    try:
        parsed = parse_datetime(value.strip()) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise PydanticCustomError(RULE, TIME_RULE)
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST <= parsed <= LATEST:
        raise PydanticCustomError(RULE, DATE_RANGE_RULE)
    # Within the range the conversion to UTC cannot overflow.
    return parsed.astimezone(UTC)


def Text(max_length: int) -> Any:  # noqa: N802 - a type
    """A string that fits its column: at most `max_length` characters, no NUL, no lone surrogate."""
    return Annotated[str, Field(max_length=max_length, pattern=NO_NUL_PATTERN), Refused("", TEXT, max_length)]


def _id(wording: str) -> Any:
    """An id matched whole (chat.ids): the schema's pattern is the server's rule."""
    return Annotated[str, Field(pattern=ID_SCHEMA_PATTERN, min_length=1, max_length=64), Refused(wording)]


ConversationId = MessageId = _id(ID_RULE)
QuestionId = _id("Must name a message id.")
DeletedId = _id("Must be a conversation id.")
Role = Annotated[Literal["user", "assistant", "system"], Refused(ROLE_RULE)]
Flag = Annotated[bool, Refused("Must be true or false.")]
Figure = Annotated[int, Field(ge=0, le=MAX_TOKENS), Refused("", FIGURE)]
SyncTime = Annotated[
    datetime,
    PlainValidator(parse_sync_time),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": SYNC_YEARS_PATTERN}),
]
# Optional fields take null as absent.
OPTIONAL = {"default": None}


class _Wire(BaseModel):
    """JSON types exactly (5 is no string, 1.0 no figure); unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class SyncMessage(_Wire):
    id: MessageId
    role: Role
    content: Text(MAX_CONTENT_CHARS) = Field("", description=f"{SYNC_TEXT} Absent: empty.")
    timestamp: SyncTime | None = Field(**OPTIONAL, description=f"{SYNC_DATE} Absent: now.")
    original_model: Text(MAX_MODEL_CHARS) | None = Field(
        **OPTIONAL, alias="originalModel", description="User messages: the model chosen."
    )
    model: Text(MAX_MODEL_CHARS) | None = Field(**OPTIONAL)
    content_type: Text(32) | None = Field(**OPTIONAL, alias="contentType")
    prompt_tokens: Figure | None = Field(**OPTIONAL)
    completion_tokens: Figure | None = Field(**OPTIONAL)
    total_tokens: Figure | None = Field(**OPTIONAL)
    reasoning_tokens: Figure | None = Field(**OPTIONAL)
    cached_tokens: Figure | None = Field(**OPTIONAL)
    user_message_id: QuestionId | None = Field(**OPTIONAL, description="Assistant messages: the question's id.")
    completion_id: Text(255) | None = Field(**OPTIONAL)
    elapsed_time: Figure | None = Field(**OPTIONAL, description="Seconds.")

    @property
    def tokens(self) -> dict[str, int | None]:
        return {name: getattr(self, name) for name in TOKEN_FIELDS}

    @property
    def stored_model(self) -> str:
        """The answer's model, or for a user message the model it was sent to."""
        return self.model or self.original_model or ""

    @property
    def elapsed_ms(self) -> int | None:
        return None if self.elapsed_time is None else min(self.elapsed_time * 1000, MAX_TOKENS)


class SyncConversation(_Wire):
    id: ConversationId
    title: Text(MAX_TITLE_CHARS) | None = Field(**OPTIONAL, description=SYNC_TEXT)
    created_at: SyncTime | None = Field(**OPTIONAL, alias="createdAt", description=SYNC_DATE)
    updated_at: SyncTime | None = Field(
        **OPTIONAL, alias="updatedAt", description=f"{SYNC_DATE} Conflicts: the later one wins."
    )
    is_active: Flag | None = Field(**OPTIONAL, alias="isActive")
    model: Text(MAX_MODEL_CHARS) | None = Field(**OPTIONAL)
    system_prompt: Text(MAX_CONTENT_CHARS) | None = Field(**OPTIONAL, alias="systemPrompt")
    messages: list[SyncMessage] | None = Field(**OPTIONAL)
    user_id: Any = Field(**OPTIONAL, alias="userId", description=DERIVED)
    message_count: Any = Field(**OPTIONAL, alias="messageCount", description=DERIVED)
    total_tokens: Any = Field(**OPTIONAL, alias="totalTokens", description=DERIVED)
    last_message_preview: Any = Field(**OPTIONAL, alias="lastMessagePreview", description=DERIVED)
    last_message_timestamp: Any = Field(**OPTIONAL, alias="lastMessageTimestamp", description=DERIVED)
    last_model: Any = Field(**OPTIONAL, alias="lastModel", description=DERIVED)

    @property
    def message_list(self) -> list[SyncMessage]:
        """The messages; null or absent is none."""
        return self.messages or []


class SyncPush(_Wire):
    conversations: list[SyncConversation] = Field([], description="Limited per push; the operation states the limit.")
    deleted: list[DeletedId] = Field([], description="Limited per push; the operation states the limit.")
    since: str | None = Field(
        **OPTIONAL,
        description="The client's last pull cursor (empty, null or absent: it has not pulled yet). The answer's "
        "`cursor` moves past this push only when the client was up to date; otherwise it is `since` again, "
        "so the next pull misses nothing.",
    )


class PushLimits(NamedTuple):
    conversations: int
    messages: int
    deleted: int


def push_limits() -> PushLimits:
    """The bounds of one push body (settings CHATLIMA_SYNC_MAX_*); a bigger history is pushed in several."""
    return PushLimits(
        settings.CHATLIMA_SYNC_MAX_CONVERSATIONS, settings.CHATLIMA_SYNC_MAX_MESSAGES, settings.CHATLIMA_SYNC_MAX_DELETED
    )


def parse_push(body: Any) -> SyncPush:
    """Validate a push body whole; raise INVALID_MESSAGE with every problem keyed by its path.

    No transaction, no lock, no query: it runs before `push` opens its transaction.
    """
    _check_envelope(body)
    try:
        parsed, errors = SyncPush.model_validate(body), []
    except ValidationError as exc:
        parsed, errors = None, exc.errors(include_url=False)
    items: dict[str, str] = {}
    refused: set[str] = set()  # the paths of what the schema refused, cut to an item's
    bad_since = False
    for error in errors:
        loc = error["loc"]
        if loc == ("since",):
            bad_since = True
            continue
        item = _path(loc[:4])  # a message, a conversation's field or an entry of `deleted`
        items[f"{item}.{loc[4]}" if len(loc) > 4 else item] = _wording(error)
        refused.add(item)
    for path, wording in _cross_item_errors(body.get("conversations", []), body.get("deleted", []), refused):
        items.setdefault(path, wording)
    if items:
        raise ClientError("INVALID_MESSAGE", "The sync body has invalid items; nothing was stored.", items)
    if bad_since:
        raise ClientError("INVALID_MESSAGE", "`since` must be a cursor string.", {"since": "invalid cursor"})
    return parsed


def _check_envelope(body: Any) -> None:
    """An object whose lists are within the push limits (PAYLOAD_TOO_LARGE), before any item is read."""
    if not isinstance(body, dict):
        raise ClientError("INVALID_MESSAGE", "The sync body must be a JSON object.")
    conversations, deleted = body.get("conversations", []), body.get("deleted", [])
    if not isinstance(conversations, list) or not isinstance(deleted, list):
        raise ClientError(
            "INVALID_MESSAGE", "`conversations` and `deleted` must be lists.", {"body": "conversations and deleted are lists"}
        )
    messages = sum(len(c["messages"]) for c in conversations if isinstance(c, dict) and isinstance(c.get("messages"), list))
    limits = push_limits()
    if len(conversations) > limits.conversations or messages > limits.messages or len(deleted) > limits.deleted:
        raise ClientError(
            "PAYLOAD_TOO_LARGE",
            f"A push carries at most {limits.conversations} conversations, {limits.messages} messages "
            f"and {limits.deleted} deleted ids; split the history into several pushes.",
            {"conversations": len(conversations), "messages": messages, "deleted": len(deleted)},
        )


def _path(loc: tuple) -> str:
    """`conversations[2].messages[3]` for pydantic's ('conversations', 2, 'messages', 3)."""
    path = loc[0]
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _wording(error: dict) -> str:
    kind, value = error["type"], error["input"]
    if kind == TEXT:
        if not isinstance(value, str):
            return "Must be a string."
        if len(value) > error["ctx"]["max_length"]:
            return f"At most {error['ctx']['max_length']} characters."
        return f"Must not contain {unstorable_character(value)}."
    if kind == FIGURE:
        if isinstance(value, bool) or not isinstance(value, int):
            return "Token figures are whole numbers."
        return f"Token figures are between 0 and {MAX_TOKENS}."
    if kind == "missing":
        return REQUIRED_WORDING.get(error["loc"][-1], error["msg"])
    return STRUCTURE_WORDING.get(kind, error["msg"])


def _cross_item_errors(conversations: list, deleted: list, refused: set[str]) -> Iterable[tuple[str, str]]:
    """What one item cannot say alone: ids repeated in the body, and answers that point at a message
    that is not a user message of their conversation. Judged over the raw items the schema passed:
    `refused` holds the paths of those it did not, a message's or a conversation's field's."""
    seen_conversations: set[str] = set()
    seen_messages: dict[str, str] = {}  # id -> the path of its first appearance
    kept_per_conversation: list[dict[str, tuple[str, dict]]] = []
    for i, conversation in enumerate(conversations):
        path = f"conversations[{i}]"
        if path in refused:
            continue
        if f"{path}.id" not in refused:
            if conversation["id"] in seen_conversations:
                yield f"{path}.id", "This conversation appears twice in the body."
            seen_conversations.add(conversation["id"])
        messages = [] if f"{path}.messages" in refused else conversation.get("messages") or []
        kept: dict[str, tuple[str, dict]] = {}
        for j, message in enumerate(messages):
            message_path = f"{path}.messages[{j}]"
            if message_path in refused:
                continue
            if message["id"] in seen_messages:
                yield f"{message_path}.id", f"This message id is also at {seen_messages[message['id']]}."
                continue
            seen_messages[message["id"]] = message_path
            kept[message["id"]] = (message_path, message)
        kept_per_conversation.append(kept)
    for k, value in enumerate(deleted):
        if f"deleted[{k}]" not in refused and value in seen_conversations:
            yield f"deleted[{k}]", "This conversation is also pushed in the same body."
    # References to stored messages are checked against the database in push().
    for kept in kept_per_conversation:
        for message_path, message in kept.values():
            ref = message.get("user_message_id")
            if ref and ref in kept and kept[ref][1]["role"] != "user":
                yield f"{message_path}.user_message_id", "Must name a user message."
            elif ref and ref in seen_messages and ref not in kept:
                yield f"{message_path}.user_message_id", "Names a message of another conversation."
