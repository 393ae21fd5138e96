"""Finding a conversation: the sidebar's "Search conversations" box."""

from __future__ import annotations

from django.db.models import Q

from chat.models import Conversation, Message

MAX_QUERY_CHARS = 200


def search_conversations(user, query: str, limit: int) -> list[Conversation]:
    """The user's live conversations, newest first; with a query, only those whose title or any
    message's text contains it (case-insensitive). Only the owner's rows are read.

    A read in autocommit: no transaction, no lock (a conversation renamed meanwhile shows either name).
    """
    words = " ".join(query.split())[:MAX_QUERY_CHARS]
    found = Conversation.objects.for_user(user)
    if words:
        in_messages = Message.objects.filter(owner=user, content__icontains=words).values("conversation_id")
        found = found.filter(Q(title__icontains=words) | Q(pk__in=in_messages))
    return list(found.order_by("-updated_at", "-pk")[:limit])
