"""What a conversation's attachments add to every later message: one text block and its counts.

The block is appended to the system prompt, so every provider receives it as text and no adapter
needs to know about attachments; `estimate_prompt_tokens` counts it with the rest of the prompt,
so `stream_start.estimated_prompt_tokens` and the page's draft estimate include it. A provider
that bills documents its own way still reports its own figures, which are the ones stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.db import DEFAULT_DB_ALIAS, connections

from chat.attachments.models import Attachment
from chat.models import Conversation
from chatlima.rows import from_row, select_list, select_where
from usage.tokens import count_tokens, uses_bpe

PREAMBLE = "The user attached these files and web pages to the conversation; use them as context."


@dataclass(frozen=True)
class AttachmentContext:
    text: str = ""
    file_count: int = 0
    url_count: int = 0
    tokens: int = 0  # the attachments' own text, counted for the exchange's model

    def system_prompt(self, base: str) -> str:
        """`base` with the attachments' block after it (base alone when there are none)."""
        if not self.text:
            return base
        return f"{base}\n\n{self.text}" if base else self.text

    def metadata(self) -> dict[str, int]:
        """The usage row's note of what the attachments carried (API.md "Attachments")."""
        return {"file_count": self.file_count, "url_count": self.url_count, "attachment_tokens": self.tokens}


def _quoted(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _section(attachment: Attachment) -> str:
    source = f' url="{_quoted(attachment.url)}"' if attachment.kind == Attachment.Kind.URL else ""
    return (f'<attachment kind="{attachment.kind}" name="{_quoted(attachment.name)}"{source}>\n'
            f"{attachment.text}\n</attachment>")


def attachments_of(conversation) -> list[Attachment]:
    """The conversation's attachments with their text, oldest first (none for a new chat). Read only, one query."""
    if conversation is None or conversation.pk is None:
        return []
    # Attachment.objects.filter(conversation=conversation).order_by("created_at", "pk"), uncompiled:
    # every send of a conversation reads this, most often to find nothing.
    return select_where(Attachment, order_by=("created_at", "pk"), conversation_id=conversation.pk)


def context_of(attachments: list[Attachment], model: str) -> AttachmentContext:
    """The block `attachments` (from `attachments_of`) make for a message sent to `model`. No query.

    Each attachment's stored count is used when it was counted with the tokenizer `model` uses;
    otherwise its text is counted again for `model` (the conversation's model changed since), so
    the figures are always `model`'s.
    """
    if not attachments:
        return AttachmentContext()
    bpe = uses_bpe(model)
    tokens = sum(a.tokens if uses_bpe(a.tokens_model) == bpe else count_tokens(a.text, model) for a in attachments)
    return AttachmentContext(
        text="\n\n".join([PREAMBLE, *(_section(a) for a in attachments)]),
        file_count=sum(a.kind == Attachment.Kind.FILE for a in attachments),
        url_count=sum(a.kind == Attachment.Kind.URL for a in attachments),
        tokens=tokens,
    )


@lru_cache(maxsize=4)
def _live_conversation_sql(vendor: str) -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    field = Conversation._meta.get_field
    return (
        f"SELECT {select_list(Conversation, 'c')}, EXISTS (SELECT 1 FROM {quote(Attachment._meta.db_table)} a "
        f"WHERE a.{quote(Attachment._meta.get_field('conversation').column)} = c.{quote(Conversation._meta.pk.column)}) "
        f"FROM {quote(Conversation._meta.db_table)} c WHERE c.{quote(field('owner').column)} = %s "
        f"AND c.{quote(field('public_id').column)} = %s AND c.{quote(field('deleted_at').column)} IS NULL LIMIT 1"
    )


def live_conversation(owner_id: int, public_id: str) -> tuple[Conversation | None, bool]:
    """The owner's live conversation `public_id` (None if there is none) and whether it has
    attachments, in one read: a send to a conversation without files (most of them) then needs no
    `attachments_of` query. Read only."""
    db = connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(_live_conversation_sql(db.vendor), [owner_id, public_id])
        row = cursor.fetchone()
    if row is None:
        return None, False
    return from_row(Conversation, row[:-1], db), bool(row[-1])


def context_for(conversation, model: str) -> AttachmentContext:
    """The attachments' block for a message of `conversation` sent to `model` (empty: none). Read
    only, one query (`attachments_of`, then `context_of`)."""
    return context_of(attachments_of(conversation), model)
