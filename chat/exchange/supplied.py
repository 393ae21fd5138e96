"""Which door an exchange came through (`Via`), and the client-supplied history of the OpenAI door.

`Via`: every door says its name ("websocket", "sse", "send", "openai") and the API token the
request came with (None: a browser session); the usage row records both (`metadata.door`, the
`api_token` column) and the token's own budget is held too (usage.budgets.reserve).

`Supplied`: what the OpenAI-compatible door (chat/openai_door.py) hands the pipeline.

OpenAI's clients send the whole conversation with every request. Such an exchange asks the
provider exactly what the client sent (its system messages and earlier turns), not the stored
thread, and its conversation is the one the client's own id maps to (`api_conversation_id`), or a
new one titled so the user can find it. The other doors never pass a `Supplied`, so nothing of
theirs changes. Plain data, no database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from accounts.models import ApiToken
from chat.providers.base import ChatRequest, Turn

API_CONVERSATION_PREFIX = "conv_api_"


def api_conversation_id(client_key: str) -> str:
    """The conversation id a client's own conversation id (OpenAI's `user`, or the
    X-ChatLima-Conversation header) maps to: the same key always reaches the same conversation of
    one user; ids are unique per user, so another user's same key is another conversation."""
    digest = hashlib.sha256(client_key.encode("utf-8", "surrogatepass")).hexdigest()
    return API_CONVERSATION_PREFIX + digest[:40]


@dataclass(frozen=True)
class Via:
    """The door an exchange came through and its API token (None: a session)."""

    door: str
    api_token: ApiToken | None = None

    def metadata(self) -> dict:
        """The usage row's note of the door and the token's name as it was then."""
        meta = {"door": self.door}
        if self.api_token is not None:
            meta["api_token"] = self.api_token.label
        return meta


@dataclass(frozen=True)
class Supplied:
    """What the client sent beside its last user message, and where the exchange is recorded."""

    history: tuple[Turn, ...]
    system_prompt: str
    title: str  # a new conversation's title
    new_conversation_id: str | None = None  # the id a new conversation gets (None: a fresh one)

    def request(self, chat_request: ChatRequest, system_prompt: str) -> ChatRequest:
        """The provider's request with the client's history and system prompt (`system_prompt`: the
        client's, with the conversation's attachments, as prepare builds every system prompt)."""
        return replace(chat_request, system_prompt=system_prompt, history=self.history)
