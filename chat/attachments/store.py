"""Attachment writes and reads: add a file or a URL, refetch a URL, remove one, list them.

Locking contract of every write: the slow part (reading the upload, fetching the page, extracting
and counting the text) runs first, outside any transaction; then ONE transaction takes the
owner's sync clock lock (`sync_clock.lock`, the per-user writer mutex every REST write and push
takes first), then the conversation's row lock, checks the limits against what is stored (so two
uploads at once cannot pass them together), writes the attachment and stamps the conversation
with the clock's next version. A conversation deleted meanwhile is CONVERSATION_NOT_FOUND and
nothing is written. A refusal of any kind writes nothing.

Limits (settings): CHATLIMA_ATTACHMENT_MAX_BYTES per file (413), CHATLIMA_FETCH_MAX_BYTES per page
(413, chat.attachments.fetch), CHATLIMA_ATTACHMENTS_PER_CONVERSATION (400) and
CHATLIMA_ATTACHMENT_MAX_TOKENS for all of a conversation's attachments together (413).
"""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum

from chat import sync_clock
from chat.attachments import extract, fetch
from chat.attachments.models import NAME_CHARS, Attachment
from chat.ids import is_valid_id
from chat.models import Conversation
from chatlima.errors import ClientError
from chatlima.text import is_blank, unstorable_character
from usage.tokens import count_tokens

# No tokenizer packs this many characters into a token on real text: a longer text is over the
# token limit without the cost of counting it.
MAX_CHARS_PER_TOKEN = 32


class Upload(Protocol):
    """What a file upload gives (Django's UploadedFile has it)."""

    name: str | None
    size: int | None
    content_type: str | None

    def read(self, size: int = -1) -> bytes: ...


def own_conversation(user, public_id: str) -> Conversation:
    """The user's live conversation `public_id`; anyone else's is as missing as a missing one. Read only."""
    conversation = None
    if is_valid_id(public_id):
        conversation = Conversation.objects.for_user(user).filter(public_id=public_id).first()
    if conversation is None:
        raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.")
    return conversation


def own_attachment(conversation: Conversation, public_id: str) -> Attachment:
    """An attachment of `conversation` (already the caller's); another's is as missing. Read only."""
    attachment = None
    if is_valid_id(public_id):
        attachment = Attachment.objects.filter(conversation=conversation, public_id=public_id).first()
    if attachment is None:
        raise ClientError("NOT_FOUND", "No such attachment.", {"attachment_id": "not found"})
    return attachment


def list_for(conversation: Conversation) -> list[Attachment]:
    """The conversation's attachments, oldest first, without their text. Read only, one query."""
    return list(Attachment.objects.filter(conversation=conversation).defer("text").order_by("created_at", "pk"))


def model_of(conversation: Conversation) -> str:
    """The model a send in this conversation uses unless it names one: what counts the text."""
    return (conversation.model or settings.CHATLIMA_DEFAULT_MODEL).strip()


def _too_many_tokens(limit: int) -> ClientError:
    return ClientError(
        "PAYLOAD_TOO_LARGE", f"A conversation's attachments may carry at most {limit:,} tokens together.",
        {"max_tokens": limit},
    )


def _count(text: str, model: str) -> int:
    limit = settings.CHATLIMA_ATTACHMENT_MAX_TOKENS
    if len(text) > limit * MAX_CHARS_PER_TOKEN:
        raise _too_many_tokens(limit)
    tokens = count_tokens(text, model)
    if tokens > limit:
        raise _too_many_tokens(limit)
    return tokens


def _file_name(raw: str | None) -> str:
    name = PureWindowsPath(PurePosixPath(raw or "").name).name.strip()
    if is_blank(name):
        raise extract.unreadable("The file needs a name.")
    bad = unstorable_character(name)
    if bad is not None:
        raise extract.unreadable(f"The file name must not contain {bad}.")
    if len(name) > NAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[: NAME_CHARS - len(suffix) - 1] + dot + suffix) if dot and len(suffix) < 16 else name[:NAME_CHARS]
    return name


def _locked(conversation: Conversation) -> Conversation:
    """Inside the writer's transaction: the clock lock, then the conversation's row lock."""
    sync_clock.lock(conversation.owner_id)
    locked = Conversation.objects.select_for_update().filter(pk=conversation.pk, deleted_at__isnull=True).first()
    if locked is None:
        raise ClientError("CONVERSATION_NOT_FOUND", "No such conversation.")
    return locked


def _check_limits(conversation: Conversation, tokens: int, replacing: Attachment | None = None) -> None:
    others = Attachment.objects.filter(conversation=conversation)
    if replacing is not None:
        others = others.exclude(pk=replacing.pk)
    per_conversation = settings.CHATLIMA_ATTACHMENTS_PER_CONVERSATION
    if replacing is None and others.count() >= per_conversation:
        raise ClientError(
            "INVALID_MESSAGE", f"A conversation may have at most {per_conversation} attachments.",
            {"field": "attachments", "max_attachments": per_conversation},
        )
    limit = settings.CHATLIMA_ATTACHMENT_MAX_TOKENS
    if (others.aggregate(total=Sum("tokens"))["total"] or 0) + tokens > limit:
        raise _too_many_tokens(limit)


def _stamp(conversation: Conversation) -> None:
    """The conversation changed for sync: its next version, from the clock locked by `_locked`."""
    Conversation.objects.filter(pk=conversation.pk).update(version=sync_clock.tick(conversation.owner_id))


def add_file(conversation: Conversation, upload: Upload) -> Attachment:
    """Attach an uploaded file: its size checked before it is read, its text extracted
    (chat.attachments.extract) and counted for the conversation's model, then stored in one
    transaction (see the module docstring for its locks). Unreadable: INVALID_MESSAGE, nothing stored."""
    name = _file_name(upload.name)
    max_bytes = settings.CHATLIMA_ATTACHMENT_MAX_BYTES
    if upload.size is not None and upload.size > max_bytes:
        raise ClientError("PAYLOAD_TOO_LARGE", f"A file may be at most {max_bytes:,} bytes.",
                          {"field": "file", "max_bytes": max_bytes})
    data = upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ClientError("PAYLOAD_TOO_LARGE", f"A file may be at most {max_bytes:,} bytes.",
                          {"field": "file", "max_bytes": max_bytes})
    if not data:
        raise extract.unreadable("The file is empty.")
    extracted = extract.extract(name, data, upload.content_type or "")
    model = model_of(conversation)
    tokens = _count(extracted.text, model)
    with transaction.atomic():
        locked = _locked(conversation)
        _check_limits(locked, tokens)
        attachment = Attachment.objects.create(
            owner_id=locked.owner_id, conversation=locked, kind=Attachment.Kind.FILE, name=name, bytes=len(data),
            format=extracted.format, text=extracted.text, tokens=tokens, tokens_model=model,
        )
        _stamp(locked)
    return attachment


def _page(url: str) -> tuple[fetch.Fetched, extract.Extracted, str]:
    """Fetch `url` (chat.attachments.fetch) and read it: HTML made readable, text, JSON or PDF
    as a file of that kind would be. Returns what was fetched, its text and its name (the page's
    title, else the URL)."""
    if not connection.in_atomic_block:
        # Seconds on the network: give the database connection back to the pool meanwhile.
        connection.close()
    fetched = fetch.fetch_url(url)
    media = fetched.content_type.split(";")[0].strip().lower()
    kind = extract.FORMAT_FOR_TYPE.get(media) or extract.format_of(
        PurePosixPath(fetch.checked_url(fetched.url).path).name, fetched.content_type)
    if kind is None:
        raise fetch.refused(f"This page is {media or 'of no stated type'}, not text, HTML, JSON or PDF.",
                            reason="unsupported")
    extracted = extract.extract_as(kind, fetched.data, fetched.charset, field="url")
    title = extract.html_title(fetched.data.decode(fetched.charset or "utf-8", "replace")) if kind == "html" else ""
    name = extract.storable(title or fetched.url.split("://", 1)[-1]).strip()[:NAME_CHARS]
    return fetched, extracted, name


def add_url(conversation: Conversation, url: str) -> Attachment:
    """Attach a web page: fetched by the server (chat.attachments.fetch's rules), made readable,
    counted for the conversation's model and stored with its fetch time, in one transaction (see
    the module docstring for its locks). A refused or failed fetch stores nothing."""
    fetched, extracted, name = _page(url)
    model = model_of(conversation)
    tokens = _count(extracted.text, model)
    with transaction.atomic():
        locked = _locked(conversation)
        _check_limits(locked, tokens)
        attachment = Attachment.objects.create(
            owner_id=locked.owner_id, conversation=locked, kind=Attachment.Kind.URL, name=name,
            bytes=len(fetched.data), url=url.strip(), format=extracted.format, text=extracted.text,
            tokens=tokens, tokens_model=model, fetched_at=fetched.fetched_at,
        )
        _stamp(locked)
    return attachment


def refetch(attachment: Attachment) -> Attachment:
    """Fetch a URL attachment again and replace its text, count and fetch time, in one
    transaction (the module docstring's locks); a file is INVALID_MESSAGE. A failed fetch keeps
    what was stored."""
    if attachment.kind != Attachment.Kind.URL:
        raise ClientError("INVALID_MESSAGE", "Only a URL attachment can be fetched again.", {"field": "attachment_id"})
    conversation = attachment.conversation
    fetched, extracted, name = _page(attachment.url)
    model = model_of(conversation)
    tokens = _count(extracted.text, model)
    with transaction.atomic():
        locked = _locked(conversation)
        current = Attachment.objects.filter(pk=attachment.pk).first()
        if current is None:
            raise ClientError("NOT_FOUND", "No such attachment.", {"attachment_id": "not found"})
        _check_limits(locked, tokens, replacing=current)
        current.name, current.bytes, current.format = name, len(fetched.data), extracted.format
        current.text, current.tokens, current.tokens_model = extracted.text, tokens, model
        current.fetched_at = fetched.fetched_at
        current.save(update_fields=["name", "bytes", "format", "text", "tokens", "tokens_model", "fetched_at"])
        _stamp(locked)
    return current


def remove(attachment: Attachment) -> None:
    """Delete one attachment; later messages no longer carry it. One transaction, the module
    docstring's locks; one already gone is not an error."""
    with transaction.atomic():
        locked = _locked(attachment.conversation)
        if Attachment.objects.filter(pk=attachment.pk).delete()[0]:
            _stamp(locked)


def delete_for_conversations(conversation_pks: list[int]) -> int:
    """Delete the attachments of conversations that were just tombstoned. Takes no lock of its own:
    call it in the deleting writer's transaction, which holds the owner's clock lock."""
    if not conversation_pks:
        return 0
    return Attachment.objects.filter(conversation_id__in=conversation_pks).delete()[0]

