"""The one small interface every provider adapter implements.

`stream(request)` yields text deltas (str) and then exactly one `Usage` as its
last item. Adapters raise `ProviderError` with one of the contract's codes
(RATE_LIMITED, PROVIDER_ERROR, TIMEOUT); a cancelled task must close the
provider's HTTP stream (async generators closed by `aclose()` do this when
they use `async with` on the SDK stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol


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
    source: str = "provider"  # "provider" or "estimate"
    retries: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def is_estimate(self) -> bool:
        return self.source == "estimate"


@dataclass
class Completion:
    text: str
    usage: Usage


class ProviderError(Exception):
    """A provider failure with the contract's code: RATE_LIMITED, PROVIDER_ERROR or TIMEOUT."""

    def __init__(self, code: str, message: str, *, retries: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retries = retries


class Provider(Protocol):
    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]: ...

    async def complete(self, request: ChatRequest) -> Completion: ...

    async def count_tokens(self, text: str, model: str) -> int: ...
