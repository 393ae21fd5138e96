"""The one small interface every provider adapter implements.

`stream(request)` yields answer text deltas (str) and reasoning deltas (`Reasoning`), then exactly
one `Usage` as its last item. Adapters raise `ProviderError` with one of the contract's codes
(RATE_LIMITED, PROVIDER_ERROR, TIMEOUT), carrying the provider's usage when the failure came with
one; a stream that ends without a finish reason and without usage has broken off and raises too.
A cancelled task must close the provider's HTTP stream (async generators closed by `aclose()` do
this when they use `async with` on the SDK stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from usage.tokens import count_tokens


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str
    message: str
    system_prompt: str = ""
    history: tuple[Turn, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Reasoning:
    """A reasoning (thinking) delta: output the provider bills, but not answer text."""

    text: str


@dataclass
class Usage:
    """Normalised usage. `completion_tokens` includes reasoning tokens for every provider."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    completion_id: str = ""
    finish_reason: str = ""
    actual_cost: Decimal | None = None  # what the provider billed, where it says (OpenRouter)
    source: str = "provider"  # "provider", "estimate", or "none" (nothing arrived, nothing reported)
    retries: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def is_estimate(self) -> bool:
        return self.source == "estimate"


class ProviderError(Exception):
    """A provider failure with the contract's code: RATE_LIMITED, PROVIDER_ERROR or TIMEOUT."""

    def __init__(self, code: str, message: str, *, retries: int = 0, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retries = retries
        self.usage = usage  # what the provider reported alongside the failure, if anything


def reconcile(prompt: int, completion: int, total: int | None, reasoning: int = 0) -> tuple[int, int, int, int]:
    """Figures in the contract's terms: completion includes reasoning, prompt + completion = total.

    Some providers report reasoning outside `completion_tokens` (xAI: prompt 12, completion 2,
    reasoning 340, total 354); whatever the provider's total holds beyond prompt + completion is
    output it billed, so it joins the completion. Reasoning is part of the completion, never more.
    Returns (prompt, completion, total, reasoning).
    """
    if total is not None and total > prompt + completion:
        completion = total - prompt
    total = prompt + completion
    return prompt, completion, total, min(reasoning, completion)


class Provider(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]: ...

    async def count_tokens(self, text: str, model: str) -> int: ...


# --- estimates, where the provider gives no figure ---------------------------------------------

# Chat formats wrap every message in a few role/separator tokens, and the reply is primed with a
# couple more (OpenAI documents 3 + 3; Gemini's turns cost about the same).
PER_MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """What the prompt (system prompt + history + message) will cost, from the estimator."""
    parts = [request.system_prompt] if request.system_prompt else []
    parts.extend(turn.content for turn in request.history)
    parts.append(request.message)
    return REPLY_PRIMING + sum(PER_MESSAGE_OVERHEAD + count_tokens(p, request.model) for p in parts)


def estimate_usage(request: ChatRequest, completion_text: str, *, finish_reason: str = "",
                   reasoning_text: str = "") -> Usage:
    """A `Usage` built from the estimator, marked as such (source="estimate"): the prompt, and the
    answer and reasoning text that arrived."""
    prompt = estimate_prompt_tokens(request)
    reasoning = count_tokens(reasoning_text, request.model) if reasoning_text else 0
    completion = count_tokens(completion_text, request.model) + reasoning
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
        reasoning_tokens=reasoning, finish_reason=finish_reason, source="estimate",
    )


def unbilled_usage(finish_reason: str = "") -> Usage:
    """A call that produced nothing and whose provider reported nothing: nothing is charged."""
    return Usage(finish_reason=finish_reason, source="none")
