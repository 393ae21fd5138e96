"""What the network adapters share: tolerant field access, backoff, and the retry loop.

Retries happen only before the first delta: once text has reached the user, repeating the request
would send a different answer after part of another one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from chat.providers.base import ProviderError, Reasoning, Usage

logger = logging.getLogger("chat.providers")

_MISSING = object()


def pick(obj: Any, *path: str) -> Any:
    """`obj.a.b` for SDK objects, dicts or pydantic dumps alike; None where any step is missing.

    Tries the attribute, then a dict key, then the model's extra fields and its dump, and never
    raises: a provider changing its response shape must not crash an exchange.
    """
    for key in path:
        if obj is None:
            return None
        try:
            if isinstance(obj, dict):
                obj = obj.get(key)
                continue
            value = getattr(obj, key, _MISSING)
            if value is _MISSING:
                extra = getattr(obj, "model_extra", None)
                if isinstance(extra, dict) and key in extra:
                    value = extra[key]
                elif callable(getattr(obj, "model_dump", None)):
                    value = obj.model_dump().get(key)
                else:
                    value = None
            obj = value
        except Exception:  # a strange shape reads as missing, never as a crash
            logger.debug("could not read %s from %r", key, type(obj), exc_info=True)
            return None
    return obj


def to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return None


def to_decimal(value: Any) -> Decimal | None:
    """A billed amount as Decimal, never through binary float arithmetic.

    A JSON string or int converts exactly. A JSON number has already been parsed to a float by the
    SDK; `repr` gives back the shortest decimal that round-trips, which is the digits the provider
    sent (they send at most 15 significant digits), so `Decimal(repr(x))` is exact where `Decimal(x)`
    would carry binary noise.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            return value
        if isinstance(value, float):
            return Decimal(repr(value))
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date) or retry-after-ms; None if absent."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            return max(0.0, (when - timezone.now()).total_seconds())
    except Exception:  # noqa: BLE001 - an unreadable header means "no hint"
        return None


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds before retry `attempt` (0-based): the server's Retry-After if it gave one, else
    exponential backoff with full jitter, both capped."""
    cap = settings.PROVIDER_RETRY_MAX_SECONDS
    if retry_after is not None:
        return min(retry_after, cap)
    return random.uniform(0, min(cap, settings.PROVIDER_RETRY_BASE_SECONDS * (2**attempt)))


@dataclass(frozen=True)
class Failure:
    """How an adapter classifies an exception: the contract's code, and whether a retry may help."""

    code: str
    retryable: bool
    message: str
    retry_after: float | None = None


async def with_retries(
    attempt: Callable[[], AsyncIterator[str | Reasoning | Usage]], classify: Callable[[BaseException], Failure]
) -> AsyncIterator[str | Reasoning | Usage]:
    """Run `attempt()` (one provider call, yielding deltas then a Usage), retrying only while
    nothing (answer text or reasoning) has arrived; the final Usage carries how many retries it took.

    Once output has arrived a failure is never retried: the provider has billed that call, and a
    second one would bill again and send a different answer after part of another.
    """
    retries = 0
    while True:
        started = False
        stream = attempt()
        try:
            async for item in stream:
                if isinstance(item, Usage):
                    item.retries = retries
                elif item and (isinstance(item, str) or item.text):
                    started = True
                yield item
            return
        except ProviderError as exc:
            exc.retries = retries
            raise
        except Exception as exc:  # every failure becomes one of the contract's codes
            failure = classify(exc)
            if started:
                # Mid-answer: the partial text stands and the pipeline estimates its usage.
                code = "TIMEOUT" if failure.code == "TIMEOUT" else "PROVIDER_ERROR"
                raise ProviderError(code, f"The provider stream broke off: {failure.message}", retries=retries) from exc
            if failure.retryable and retries < settings.PROVIDER_MAX_RETRIES:
                delay = retry_delay(retries, failure.retry_after)
                logger.info("provider call failed (%s), retry %d in %.2fs", failure.message, retries + 1, delay)
                retries += 1
                await stream.aclose()
                await asyncio.sleep(delay)
                continue
            raise ProviderError(failure.code, failure.message, retries=retries) from exc
        finally:
            await stream.aclose()


def broken_off(name: str, usage: Usage | None = None) -> ProviderError:
    """A stream that ended with neither a finish reason nor usage: the connection was cut short."""
    return ProviderError("PROVIDER_ERROR", f"The {name} stream broke off before it finished.", usage=usage)


def is_timeout(exc: BaseException) -> bool:
    """True for the timeouts of httpx, httpx2, asyncio and the SDKs' own wrappers."""
    for cls in type(exc).__mro__:
        if "Timeout" in cls.__name__:
            return True
    return isinstance(exc, TimeoutError)
