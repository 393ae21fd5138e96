"""Validation of a sync push body: the whole body is checked before anything is written.

`parse_push` turns the mobile client's JSON into plain dataclasses or raises one
INVALID_MESSAGE whose details name every bad item by its path
(`conversations[2].messages[3].content`). It reads no database and takes no lock;
checks that need stored rows are `chat.sync.push`'s. Whatever passes here fits its
column on every backend: dates are within 1970-2100 (UTC), strings hold no NUL and
no lone surrogate, figures fit a PositiveIntegerField. Its cost is linear in the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from chat.ids import is_valid_id
from chat.models import Message
from chatlima.errors import ClientError
from chatlima.text import unstorable_character

# The bounds of one push body; a bigger history is pushed in several bodies.
MAX_PUSH_CONVERSATIONS = getattr(settings, "CHATLIMA_SYNC_MAX_CONVERSATIONS", 1_000)
MAX_PUSH_MESSAGES = getattr(settings, "CHATLIMA_SYNC_MAX_MESSAGES", 20_000)
MAX_PUSH_DELETED = getattr(settings, "CHATLIMA_SYNC_MAX_DELETED", 1_000)
# Assistant answers may be long; this only guards against absurd bodies.
MAX_CONTENT_CHARS = 200_000
MAX_TITLE_CHARS = 255
MAX_MODEL_CHARS = 128

TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens", "cached_tokens")
MAX_TOKENS = 2_147_483_647  # the PositiveIntegerField ceiling on every backend
ROLES = {r.value for r in Message.Role}

# A date outside these stores on PostgreSQL (year 1 BC, year 10000) but cannot be read back
# into Python, so one push would break every later read of the account.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
DATE_RANGE_MESSAGE = "Dates are between 1970-01-01T00:00:00Z and 2100-12-31T23:59:59Z."


@dataclass
class PushedMessage:
    path: str
    id: str
    role: str
    content: str
    timestamp: datetime
    model: str
    content_type: str | None
    completion_id: str
    elapsed_ms: int | None
    user_message_ref: str | None
    tokens: dict[str, int | None]


@dataclass
class PushedConversation:
    path: str
    id: str
    title: str | None
    created_at: datetime | None
    updated_at: datetime | None
    is_active: bool | None
    model: str | None
    system_prompt: str | None
    messages: list[PushedMessage] = field(default_factory=list)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return None
    if parsed is None:
        return None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def in_storable_range(value: datetime) -> bool:
    """Whether an aware datetime lies within 1970-01-01 and 2100-12-31 (UTC), both days included."""
    return EARLIEST <= value <= LATEST


class ItemErrors:
    """Problems keyed by path (`conversations[2].messages[3].content`), the first one per path kept."""

    def __init__(self) -> None:
        self.items: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.items.setdefault(path, message)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def _optional_str(obj: dict, key: str, path: str, errors: ItemErrors, max_len: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add(f"{path}.{key}", "Must be a string.")
        return None
    if len(value) > max_len:
        errors.add(f"{path}.{key}", f"At most {max_len} characters.")
        return None
    if (found := unstorable_character(value)) is not None:
        errors.add(f"{path}.{key}", f"Must not contain {found}.")
        return None
    return value


def _optional_time(obj: dict, key: str, path: str, errors: ItemErrors) -> datetime | None:
    if obj.get(key) is None:
        return None
    parsed = _parse_time(obj[key])
    if parsed is None:
        errors.add(f"{path}.{key}", "Must be an ISO 8601 timestamp.")
        return None
    if not in_storable_range(parsed):
        errors.add(f"{path}.{key}", DATE_RANGE_MESSAGE)
        return None
    # Stored in UTC: within the range that conversion cannot overflow.
    return parsed.astimezone(UTC)


def _token_figure(obj: dict, key: str, path: str, errors: ItemErrors) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python; 1.0 is not an integer figure on the wire.
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(f"{path}.{key}", "Token figures are whole numbers.")
        return None
    if value < 0 or value > MAX_TOKENS:
        errors.add(f"{path}.{key}", "Token figures are between 0 and 2147483647.")
        return None
    return value


def _parse_message(raw: Any, path: str, errors: ItemErrors) -> PushedMessage | None:
    if not isinstance(raw, dict):
        errors.add(path, "Must be an object.")
        return None
    # Every problem found below is keyed under this message's path, so a count that grew means
    # this message is bad; scanning all earlier problems instead made validation quadratic.
    errors_before = len(errors)
    msg_id = raw.get("id")
    if not is_valid_id(msg_id):
        errors.add(f"{path}.id", "Ids are 1 to 64 letters, digits, '_' or '-'.")
    role = raw.get("role")
    if not isinstance(role, str) or role not in ROLES:
        errors.add(f"{path}.role", "One of user, assistant, system.")
    content = raw.get("content", "")
    if not isinstance(content, str):
        errors.add(f"{path}.content", "Must be a string.")
    elif len(content) > MAX_CONTENT_CHARS:
        errors.add(f"{path}.content", f"At most {MAX_CONTENT_CHARS} characters.")
    elif (found := unstorable_character(content)) is not None:
        errors.add(f"{path}.content", f"Must not contain {found}.")
    timestamp = _optional_time(raw, "timestamp", path, errors)
    model = _optional_str(raw, "model", path, errors, MAX_MODEL_CHARS)
    original_model = _optional_str(raw, "originalModel", path, errors, MAX_MODEL_CHARS)
    content_type = _optional_str(raw, "contentType", path, errors, 32)
    completion_id = _optional_str(raw, "completion_id", path, errors, 255)
    tokens = {key: _token_figure(raw, key, path, errors) for key in TOKEN_FIELDS}
    elapsed = _token_figure(raw, "elapsed_time", path, errors)
    user_ref = raw.get("user_message_id")
    if user_ref is not None and not is_valid_id(user_ref):
        errors.add(f"{path}.user_message_id", "Must name a message id.")
    if len(errors) > errors_before:
        return None
    return PushedMessage(
        path=path,
        id=msg_id,
        role=role,
        content=content,
        timestamp=timestamp or timezone.now(),
        model=model or original_model or "",
        content_type=content_type or None,
        completion_id=completion_id or "",
        elapsed_ms=None if elapsed is None else min(elapsed * 1000, MAX_TOKENS),
        user_message_ref=user_ref,
        tokens=tokens,
    )


def parse_push(body: Any) -> tuple[list[PushedConversation], list[str]]:
    """Validate a push body whole; raise INVALID_MESSAGE with every problem keyed by its path.

    No transaction, no lock, no query: it runs before `push` opens its transaction.
    """
    if not isinstance(body, dict):
        raise ClientError("INVALID_MESSAGE", "The sync body must be a JSON object.")
    raw_conversations = body.get("conversations", [])
    raw_deleted = body.get("deleted", [])
    if not isinstance(raw_conversations, list) or not isinstance(raw_deleted, list):
        raise ClientError(
            "INVALID_MESSAGE", "`conversations` and `deleted` must be lists.", {"body": "conversations and deleted are lists"}
        )
    message_total = sum(len(c.get("messages") or []) for c in raw_conversations if isinstance(c, dict) and isinstance(c.get("messages"), list))
    if len(raw_conversations) > MAX_PUSH_CONVERSATIONS or message_total > MAX_PUSH_MESSAGES or len(raw_deleted) > MAX_PUSH_DELETED:
        raise ClientError(
            "PAYLOAD_TOO_LARGE",
            f"A push carries at most {MAX_PUSH_CONVERSATIONS} conversations, {MAX_PUSH_MESSAGES} messages "
            f"and {MAX_PUSH_DELETED} deleted ids; split the history into several pushes.",
            {"conversations": len(raw_conversations), "messages": message_total, "deleted": len(raw_deleted)},
        )

    errors = ItemErrors()
    conversations: list[PushedConversation] = []
    seen_conversations: set[str] = set()
    seen_messages: dict[str, str] = {}
    for i, raw in enumerate(raw_conversations):
        path = f"conversations[{i}]"
        if not isinstance(raw, dict):
            errors.add(path, "Must be an object.")
            continue
        conv_id = raw.get("id")
        if not is_valid_id(conv_id):
            errors.add(f"{path}.id", "Ids are 1 to 64 letters, digits, '_' or '-'.")
        elif conv_id in seen_conversations:
            errors.add(f"{path}.id", "This conversation appears twice in the body.")
        else:
            seen_conversations.add(conv_id)
        is_active = raw.get("isActive")
        if is_active is not None and not isinstance(is_active, bool):
            errors.add(f"{path}.isActive", "Must be true or false.")
        conversation = PushedConversation(
            path=path,
            id=conv_id,
            title=_optional_str(raw, "title", path, errors, MAX_TITLE_CHARS),
            created_at=_optional_time(raw, "createdAt", path, errors),
            updated_at=_optional_time(raw, "updatedAt", path, errors),
            is_active=is_active if isinstance(is_active, bool) else None,
            model=_optional_str(raw, "model", path, errors, MAX_MODEL_CHARS),
            system_prompt=_optional_str(raw, "systemPrompt", path, errors, MAX_CONTENT_CHARS),
        )
        raw_messages = raw.get("messages", [])
        if raw_messages is None:
            raw_messages = []
        if not isinstance(raw_messages, list):
            errors.add(f"{path}.messages", "Must be a list.")
            raw_messages = []
        for j, raw_message in enumerate(raw_messages):
            message = _parse_message(raw_message, f"{path}.messages[{j}]", errors)
            if message is None:
                continue
            if message.id in seen_messages:
                errors.add(f"{message.path}.id", f"This message id is also at {seen_messages[message.id]}.")
                continue
            seen_messages[message.id] = message.path
            conversation.messages.append(message)
        conversations.append(conversation)

    deleted: list[str] = []
    seen_deleted: set[str] = set()
    for k, value in enumerate(raw_deleted):
        if not is_valid_id(value):
            errors.add(f"deleted[{k}]", "Must be a conversation id.")
        elif value in seen_conversations:
            errors.add(f"deleted[{k}]", "This conversation is also pushed in the same body.")
        elif value not in seen_deleted:
            seen_deleted.add(value)
            deleted.append(value)

    # An answer's user_message_id must name a user message of the same conversation;
    # references to stored messages are checked against the database in push().
    for conversation in conversations:
        in_body = {m.id: m for m in conversation.messages}
        for message in conversation.messages:
            ref = message.user_message_ref
            if ref and ref in in_body and in_body[ref].role != Message.Role.USER:
                errors.add(f"{message.path}.user_message_id", "Must name a user message.")
            elif ref and ref in seen_messages and ref not in in_body:
                errors.add(f"{message.path}.user_message_id", "Names a message of another conversation.")
    if errors:
        raise ClientError("INVALID_MESSAGE", "The sync body has invalid items; nothing was stored.", errors.items)
    return conversations, deleted
