"""Versions: regenerating an answer, editing and resending a user message.

Both are ordinary exchanges (one `pending` usage row, settled once by settle.py) that also take
messages out of the conversation's *live thread*: the messages whose `superseded_at` is null, which
are what the provider is sent as history (`prepare.build_context`, and so the draft estimate) and
what the page shows. Nothing is deleted and no figure moves: `derive_totals`, the conversation's
running totals, /token-usage and the budgets count every message and every usage row, superseded
or not ("what the earlier answers cost stays counted and visible").

* Regenerate (send body `regenerate` = a live answer's id, no `message`): the provider is asked the
  answer's question again, with the live history before that question. The new answer gets
  `replaces` = the old answer; the old answer and every live message after it get `superseded_at`
  (one moment for all). The exchange's request id is its own `client_message_id` (or a new id): the
  usage row's `request_id` stays unique, and a retry with that id replays the stored result
  (`known_regeneration`), never calling the provider again. No user message is written: the
  exchange's prompt tokens are *added* to the question's `prompt_tokens` (settle.py,
  `SettleTarget.adds_prompt`), so the user bubble shows what the question cost over all its sends
  and `derive_totals`' input sum still counts every send. Each answer version keeps its own
  `completion_tokens` and `cost` (the cost of its whole exchange, prompt included); its own prompt is
  `total_tokens - completion_tokens`.
* Edit and resend (send body `edit_of` = a live user message's id, `message` = the new text): a new
  user message with `replaces` = the old one; the old one and every live message after it get
  `superseded_at`; the exchange runs as usual with the live history before the edited message.

Refused with INVALID_MESSAGE (`details.field` `regenerate` or `edit_of`), changing nothing: an id
the user has no message with (a stranger's included), a message of the wrong role, one in another
conversation than `conversation_id`, one no longer live, and one whose answer (or any later one) is
still streaming. A stranger's `conversation_id` is CONVERSATION_NOT_FOUND, as everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from accounts.models import User
from chat.exchange.body import SendBody
from chat.exchange.replay import Replay, replay
from chat.models import Conversation, Message
from chatlima.errors import ClientError
from usage.models import ApiUsageLog

R = Message.Role


@dataclass(frozen=True)
class VersionOf:
    """What a regeneration or an edit replaces, resolved before anything is written."""

    kind: str  # "regenerate" or "edit_of"
    old: Message  # the answer regenerated, or the user message edited
    question: Message | None  # regenerate: the user message asked again
    conversation: Conversation

    @property
    def cut(self) -> tuple[datetime, int]:
        """History sent with this exchange: the live messages before this (timestamp, pk)."""
        first = self.question if self.question is not None else self.old
        return (first.timestamp, first.pk)

    @property
    def adds_prompt(self) -> bool:
        return self.kind == "regenerate"

    def metadata(self) -> dict:
        """What the usage row notes of it (the restart sweep reads `regenerates`)."""
        if self.kind == "regenerate":
            return {"regenerates": self.old.public_id, "question_id": self.question.public_id}
        return {"edit_of": self.old.public_id}


def _refuse(field: str, text: str, message_id: str) -> ClientError:
    return ClientError("INVALID_MESSAGE", text, {"field": field, "message_id": message_id})


def after(message: Message) -> Q:
    """Messages after `message` in the thread's order (timestamp, then pk)."""
    return Q(timestamp__gt=message.timestamp) | Q(timestamp=message.timestamp, pk__gt=message.pk)


def resolve(user: User, req: SendBody, conversation: Conversation | None) -> VersionOf | None:
    """The message `regenerate` or `edit_of` names, checked; None for an ordinary send. Reads only."""
    kind = "regenerate" if req.regenerate else "edit_of" if req.edit_of else None
    if kind is None:
        return None
    public_id = req.regenerate or req.edit_of
    old = (Message.objects.select_related("conversation", "user_message")
           .filter(owner=user, public_id=public_id, conversation__deleted_at__isnull=True).first())
    if old is None or (conversation is not None and old.conversation_id != conversation.pk):
        raise _refuse(kind, "No such message in this conversation.", public_id)
    wanted = R.ASSISTANT if kind == "regenerate" else R.USER
    if old.role != wanted:
        raise _refuse(kind, "Only an answer can be regenerated." if kind == "regenerate"
                      else "Only your own message can be edited.", public_id)
    if old.superseded_at is not None:
        raise _refuse(kind, "That message has been replaced by a newer version.", public_id)
    question = None
    if kind == "regenerate":
        question = old.user_message
        if question is None or question.superseded_at is not None:
            raise _refuse(kind, "That answer has no question to ask again.", public_id)
    live_after = old.conversation.messages.filter(superseded_at__isnull=True)
    streaming = live_after.filter(after(question or old) | Q(pk=old.pk), status=Message.Status.STREAMING)
    if streaming.exists():
        raise _refuse(kind, "Wait until the answer has finished streaming.", public_id)
    return VersionOf(kind=kind, old=old, question=question, conversation=old.conversation)


def known_regeneration(user: User, req: SendBody) -> Replay | None:
    """A regeneration whose `client_message_id` already has its usage row: that result again (no
    provider call). INVALID_MESSAGE if the id is another exchange's or another message's."""
    if not req.regenerate or not req.client_message_id:
        return None
    request_id = req.client_message_id
    row = ApiUsageLog.objects.filter(user=user, request_id=request_id).select_related("message").first()
    if row is None:
        if Message.objects.filter(owner=user, public_id=request_id).exists():
            raise ClientError("INVALID_MESSAGE", "client_message_id is already used by another message.",
                              {"field": "client_message_id"})
        return None
    answer = row.message
    if answer is None or (row.metadata or {}).get("regenerates") != req.regenerate or answer.user_message is None:
        raise ClientError("INVALID_MESSAGE", "client_message_id is already used by another exchange.",
                          {"field": "client_message_id"})
    return replay(user, answer.user_message, request_id=request_id, answer=answer)


def request_id_taken(user: User, request_id: str) -> bool:
    """Whether a usage row already has this request id (read after an insert failed on it)."""
    return ApiUsageLog.objects.filter(user=user, request_id=request_id).exists()


def supersede(version: VersionOf, now: datetime, clock: int) -> None:
    """Take the replaced message and every live message after it out of the live thread, at `now`,
    stamped with the sync clock's `clock` (so a pull sees them change).

    In the caller's transaction, after it took the conversation's row lock (prepare's stamp), so
    two versions of one conversation are made one after the other. A compare-and-set: if the
    message stopped being live meanwhile, INVALID_MESSAGE and the caller's transaction rolls back.
    """
    start = version.old
    live = Message.objects.filter(conversation_id=version.conversation.pk, superseded_at__isnull=True)
    if not live.filter(pk=start.pk).exclude(status=Message.Status.STREAMING).update(
            superseded_at=now, version=clock):
        raise _refuse(version.kind, "That message has been replaced by a newer version.", start.public_id)
    live.filter(after(start)).update(superseded_at=now, version=clock)
