"""`offline-demo`: a deterministic model that needs no network, so a fresh machine can chat at once.

It answers about ChatLima itself and echoes what it was asked, in markdown, streaming word by word
at `CHATLIMA_OFFLINE_CHUNK_DELAY_MS`. Its usage comes from the estimator and is marked as such.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

from django.conf import settings

from chat.providers.base import ChatRequest, Usage, estimate_prompt_tokens
from usage.catalogue import Listing
from usage.tokens import count_tokens

MODEL_ID = "offline-demo"
DISPLAY_NAME = "Offline demo (free, no network)"
CONTEXT_WINDOW = 32768

# A word and the whitespace after it, so joining the deltas gives back the text exactly.
_WORDS = re.compile(r"\s*\S+\s*", re.S)

# Topic hints, checked in order: the first whose keywords appear in the message adds its paragraph.
_TOPICS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("budget", "limit", "spend", "quota"),
     "**Budgets.** Every account has a token budget (and optionally a cost budget) per period. "
     "Before a message is sent, ChatLima holds the estimated prompt plus the maximum answer "
     "length against it, and settles the real figures when the answer ends."),
    (("cost", "price", "pricing", "money", "bill", "$"),
     "**Costs.** Each answer is priced from the model's list price per million tokens: uncached "
     "input, cached input and output (reasoning included) separately, in exact decimals. Where a "
     "provider reports what it billed, that figure is shown too."),
    (("token", "usage", "count"),
     "**Tokens.** Figures come from the provider when it reports them; when it cannot (like this "
     "offline model), ChatLima estimates them and marks them as estimates."),
    (("model", "provider", "openai", "gemini", "openrouter", "gpt"),
     "**Models.** Add an OpenAI, OpenRouter or Gemini key in the environment and their models "
     "appear in the model selector; the offline demo is always there and costs nothing."),
    (("sync", "device", "offline", "phone"),
     "**Sync.** Conversations sync between your devices; each device pulls what changed since its "
     "last cursor, so nothing is lost when one of them was offline."),
)

_DEFAULT_TOPIC = (
    "**What ChatLima does.** It is a chat app that keeps an honest account of every exchange: "
    "tokens in and out, what they cost, and how much of your budget is left."
)


def _quote(message: str) -> str:
    lines = message.strip().splitlines() or [""]
    return "\n".join(f"> {line}".rstrip() for line in lines)


def demo_answer(request: ChatRequest) -> str:
    """The offline model's full answer to a request (deterministic: same request, same answer)."""
    message = request.message.strip()
    lowered = message.lower()
    topics = [text for keys, text in _TOPICS if any(k in lowered for k in keys)] or [_DEFAULT_TOPIC]
    turns = len(request.history) // 2
    parts = [
        "Hello! I'm the **offline demo model** of ChatLima. I run on this server without any "
        "network access, so I can't really think, but I can show you how an answer streams in.",
        "You asked:",
        _quote(message) if message else "> *(an empty message)*",
        *topics,
        "A few things to try:\n\n"
        "- Watch the token and cost figures under each answer (mine are estimates).\n"
        "- Pick a real model in the selector once a provider key is configured.\n"
        "- Open the usage page to see your budget and daily totals.",
    ]
    if turns:
        parts.append(f"_This conversation already has {turns} earlier exchange{'s' if turns != 1 else ''}._")
    return "\n\n".join(parts)


def _completion_id() -> str:
    return f"offline-{uuid.uuid4().hex[:24]}"


class OfflineProvider:
    name = "offline"

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        delay = max(0, settings.CHATLIMA_OFFLINE_CHUNK_DELAY_MS) / 1000
        limit = request.max_tokens
        completion = 0
        finish = "stop"
        for word in _WORDS.findall(demo_answer(request)):
            cost = count_tokens(word, request.model)
            if limit is not None and completion + cost > limit:
                finish = "length"
                break
            # Every word takes the model's pace, the first one too (its time to first token); sleep(0)
            # still yields to the loop, so a cancel lands between words even at full speed.
            await asyncio.sleep(delay)
            completion += cost
            yield word
        prompt = estimate_prompt_tokens(request)
        yield Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
            completion_id=_completion_id(), finish_reason=finish, source="estimate",
        )


    async def count_tokens(self, text: str, model: str = MODEL_ID) -> int:
        return count_tokens(text, model)

    def list_models(self) -> list[Listing]:
        return [Listing(model_id=MODEL_ID, display_name=DISPLAY_NAME, context_window=CONTEXT_WINDOW)]

