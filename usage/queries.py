"""Read-side rules of the usage API: every query is scoped to one user, costs stay Decimal."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import ApiToken
from chatlima.errors import ClientError
from chatlima.formats import money_display, money_str, utc_iso
from usage import endpoints
from usage.models import ApiUsageLog, CatalogueEntry, DailyUsageRollup
from usage.pricing import FREE, Price, admin_prices_on, price_payload, prices_on

HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 500
DAILY_DEFAULT_DAYS = 30
DAILY_MAX_DAYS = 366

USAGE_ROW_FIELDS = [
    "id", "request_id", "conversation_id", "message_id", "provider", "model_name", "prompt_tokens",
    "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens", "cost_estimate", "actual_cost",
    "response_time_ms", "time_to_first_token_ms", "status", "usage_source", "error_message", "metadata", "created_at",
    "api_token_id", "api_token", "door",
]


# --------------------------------------------------------------------------- dates


# API.md: dates are ISO 8601, a day (2025-07-22) or a timestamp (RFC 3339; without an offset, UTC),
# from 1970 to 2100 as written. The schema says the same (DATE_PARAM_SCHEMA); nothing else is a date.
FIRST_YEAR, LAST_YEAR = 1970, 2100
_MOMENT = re.compile(
    r"\A(?P<year>[0-9]{4})-[0-9]{2}-[0-9]{2}"
    r"(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?)?\Z"
)
_YEARS_PATTERN = "^(19[7-9][0-9]|20[0-9][0-9]|2100)-"
DATE_PARAM_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date", "pattern": _YEARS_PATTERN},
        {"type": "string", "format": "date-time", "pattern": _YEARS_PATTERN},
    ],
}


def _parse_moment(value: str, name: str) -> date | datetime:
    """A day or an aware timestamp; anything else, or a year outside 1970-2100, is INVALID_MESSAGE."""
    match = _MOMENT.match(value)
    if match is None:
        raise ClientError("INVALID_MESSAGE", f"`{name}` must be an ISO 8601 date or timestamp.", {name: "invalid date"})
    if not FIRST_YEAR <= int(match["year"]) <= LAST_YEAR:
        raise ClientError("INVALID_MESSAGE", f"`{name}` must be from {FIRST_YEAR} to {LAST_YEAR}.", {name: "out of range"})
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        text = value[:-1] + "+00:00" if match["offset"] in ("Z", "z") else value
        parsed = datetime.fromisoformat(text)  # takes any fraction, keeps microseconds
    except ValueError as exc:  # 2025-02-30, 25:00, an offset of 24 hours
        raise ClientError("INVALID_MESSAGE", f"`{name}` is not a real date or time.", {name: "invalid date"}) from exc
    # In UTC: PostgreSQL refuses offsets past 15:59, which RFC 3339 allows (up to 23:59).
    return parsed.replace(tzinfo=UTC) if timezone.is_naive(parsed) else parsed.astimezone(UTC)


def moment_range(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """[from, until) in UTC; a date alone covers that whole UTC day."""
    since = until = None
    if start:
        parsed = _parse_moment(start, "start_date")
        since = parsed if isinstance(parsed, datetime) else datetime.combine(parsed, time.min, UTC)
    if end:
        parsed = _parse_moment(end, "end_date")
        if isinstance(parsed, datetime):
            until = parsed + timedelta(microseconds=1)
        else:
            until = datetime.combine(parsed + timedelta(days=1), time.min, UTC)
    if since and until and since >= until:
        raise ClientError("INVALID_MESSAGE", "`start_date` must be before `end_date`.", {"start_date": "after end_date"})
    return since, until


def day_range(user, start: str | None, end: str | None) -> tuple[date, date]:
    """Inclusive days in the user's time zone; the rollups are kept per user day."""

    def as_day(value: str, name: str) -> date:
        parsed = _parse_moment(value, name)
        return parsed.astimezone(user.tzinfo).date() if isinstance(parsed, datetime) else parsed

    last = as_day(end, "end_date") if end else timezone.now().astimezone(user.tzinfo).date()
    first = as_day(start, "start_date") if start else last - timedelta(days=DAILY_DEFAULT_DAYS - 1)
    if first > last:
        raise ClientError("INVALID_MESSAGE", "`start_date` must not be after `end_date`.", {"start_date": "after end_date"})
    if (last - first).days + 1 > DAILY_MAX_DAYS:
        raise ClientError("INVALID_MESSAGE", f"At most {DAILY_MAX_DAYS} days per request.", {"end_date": "range too long"})
    return first, last


# --------------------------------------------------------------------------- queries


def usage_logs(user, since: datetime | None = None, until: datetime | None = None,
               api_token: int | None = None) -> QuerySet[ApiUsageLog]:
    """The user's rows in [since, until), of one API token's when `api_token` is given (usage.by_token)."""
    rows = ApiUsageLog.objects.filter(user=user)
    if api_token is not None:
        rows = rows.filter(api_token_id=api_token)
    if since:
        rows = rows.filter(created_at__gte=since)
    if until:
        rows = rows.filter(created_at__lt=until)
    return rows


def settled_logs(user, since: datetime | None = None, until: datetime | None = None,
                 api_token: int | None = None) -> QuerySet[ApiUsageLog]:
    """Rows of exchanges that have finished; a pending one is still in flight."""
    return usage_logs(user, since, until, api_token).finished()


def stats_by_model(user, since: datetime | None, until: datetime | None,
                   api_token: int | None = None) -> list[dict[str, Any]]:
    """Per-model figures of the finished rows; requests and errors as `ApiUsageLog.outcome_counts` decides."""
    counts = ApiUsageLog.outcome_counts()
    rows = (
        settled_logs(user, since, until, api_token)
        .values("provider", "model_name")
        .annotate(
            total_requests=counts["requests"],
            error_count=counts["errors"],
            total_prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            total_completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            total_tokens=Coalesce(Sum("total_tokens"), 0),
            total_cost=Sum("cost_estimate"),
        )
        .order_by("provider", "model_name")
    )
    stats = []
    for row in rows:
        requests = row["total_requests"]
        stats.append(
            {
                **row,
                "total_cost": money_str(row["total_cost"] if row["total_cost"] is not None else Decimal("0")),
                "avg_tokens_per_request": round(row["total_tokens"] / requests, 2) if requests else 0,
            }
        )
    return stats


def _with_public_ids(rows: QuerySet[ApiUsageLog]) -> QuerySet[ApiUsageLog]:
    return rows.annotate(
        conversation_public_id=F("conversation__public_id"), message_public_id=F("message__public_id"),
        api_token_name=F("api_token__name"), api_token_key=F("api_token__token_key"),
    ).order_by("-created_at", "-pk")


def usage_row(log: ApiUsageLog) -> dict[str, Any]:
    """A usage log row as the contract names it; ids are the client-visible ones."""
    return {
        "id": str(log.id),
        "request_id": log.request_id,
        "conversation_id": getattr(log, "conversation_public_id", None),
        "message_id": getattr(log, "message_public_id", None),
        "provider": log.provider,
        "model_name": log.model_name,
        "prompt_tokens": log.prompt_tokens,
        "completion_tokens": log.completion_tokens,
        "total_tokens": log.total_tokens,
        "cached_tokens": log.cached_tokens,
        "reasoning_tokens": log.reasoning_tokens,
        "cost_estimate": money_str(log.cost_estimate),
        "actual_cost": money_str(log.actual_cost),
        "response_time_ms": log.response_time_ms,
        "time_to_first_token_ms": log.time_to_first_token_ms,
        "status": log.status,
        "usage_source": log.usage_source,
        "error_message": log.error_message,
        "metadata": log.metadata,
        "created_at": utc_iso(log.created_at),
        # Extensions (README "API tokens"): the token and door the exchange came through.
        "api_token_id": log.api_token_id,
        "api_token": None if log.api_token_id is None else ApiToken(
            name=getattr(log, "api_token_name", "") or "", token_key=getattr(log, "api_token_key", "") or "").label,
        "door": (log.metadata or {}).get("door") if isinstance(log.metadata, dict) else None,
    }


def history(user, since, until, limit: int, offset: int, api_token: int | None = None) -> dict[str, Any]:
    rows = usage_logs(user, since, until, api_token)
    page = _with_public_ids(rows)[offset : offset + limit]
    return {"history": [usage_row(log) for log in page], "count": rows.count()}


def csv_rows(user, since, until, api_token: int | None = None) -> Iterator[list[Any]]:
    yield USAGE_ROW_FIELDS
    for log in _with_public_ids(usage_logs(user, since, until, api_token)).iterator(chunk_size=1000):
        row = usage_row(log)
        row["metadata"] = json.dumps(row["metadata"], sort_keys=True)
        yield ["" if row[name] is None else row[name] for name in USAGE_ROW_FIELDS]


def daily(user, first: date, last: date) -> list[dict[str, Any]]:
    rollups = DailyUsageRollup.objects.filter(user=user, day__gte=first, day__lte=last).order_by("day", "provider", "model_name")
    return [
        {
            "date": r.day.isoformat(),
            "provider": r.provider,
            "model_name": r.model_name,
            "requests": r.requests,
            "errors": r.errors,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.total_tokens,
            "cached_tokens": r.cached_tokens,
            "reasoning_tokens": r.reasoning_tokens,
            "cost": money_str(r.cost),
        }
        for r in rollups
    ]


@dataclass
class ListedModel:
    """A model of the catalogue as the API, the chat page and the admin show it."""

    model_id: str
    provider: str
    display_name: str
    context_window: int | None
    listed: bool
    price: Price | None

    @property
    def provider_label(self) -> str:
        return endpoints.label(self.provider)

    @property
    def is_available(self) -> bool:
        """Usable now: its provider is configured and still lists it."""
        return self.listed and endpoints.is_known(self.provider) and endpoints.provider_is_configured(self.provider)

    @property
    def input_per_mtok(self) -> Decimal | None:
        return None if self.price is None else self.price.input_per_mtok

    @property
    def output_per_mtok(self) -> Decimal | None:
        return None if self.price is None else self.price.output_per_mtok

    @property
    def currency(self) -> str:
        return "USD" if self.price is None else self.price.currency

    @property
    def price_label(self) -> str:
        """The price as the chat page's selector shows it."""
        if self.price is None:
            return "price unknown"
        if self.price.source == FREE or not (self.price.input_per_mtok or self.price.output_per_mtok):
            return "free"
        return (f"${money_display(self.price.input_per_mtok)} in / ${money_display(self.price.output_per_mtok)} out"
                " per 1M tokens")

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "provider": self.provider,
            "display_name": self.display_name,
            "available": self.is_available,
            "context_window": self.context_window or 0,
            "pricing": price_payload(self.price),
        }


def catalogue_models(on: date | None = None) -> list[ListedModel]:
    """Every model of the catalogue, one per id (the provider serving it), grouped by provider in
    provider order and by name within each, priced on `on` (today): a handful of queries however
    long the catalogue is."""
    chosen: dict[str, CatalogueEntry] = {}
    for entry in CatalogueEntry.objects.all():
        held = chosen.get(entry.model_id)
        if held is None or _serves_before(entry, held):
            chosen[entry.model_id] = entry
    day = on or timezone.now().astimezone(UTC).date()
    admin = admin_prices_on(day)
    models = [ListedModel(e.model_id, e.provider, e.display_name, e.context_window, e.listed, None)
              for e in chosen.values()]
    # A model only an administrator's price names is in the catalogue under that price's provider.
    models += [ListedModel(p.model_id, p.provider, p.display_name, p.context_window, True, None)
               for p in admin.values() if p.model_id not in chosen]
    prices = prices_on([(m.provider, m.model_id) for m in models], day, admin)
    for model in models:
        model.price = prices[(model.provider, model.model_id)]
    return sorted(models, key=lambda m: (endpoints.rank(m.provider), m.display_name.lower(), m.model_id))


def _serves_before(entry: CatalogueEntry, other: CatalogueEntry) -> bool:
    """The entry that serves an id two providers list: a listed one, then the first provider in order."""
    return (not entry.listed, endpoints.rank(entry.provider)) < (not other.listed, endpoints.rank(other.provider))


def model_catalogue(search: str | None = None, provider: str | None = None) -> dict[str, Any]:
    """GET /api/v1/models: the catalogue grouped by provider (`providers` says how many of each),
    optionally only the models whose id or name contains `search` (any case), or of one provider."""
    models = catalogue_models()
    if provider:
        models = [m for m in models if m.provider == provider]
    if search:
        needle = search.casefold()
        models = [m for m in models if needle in m.model_id.casefold() or needle in m.display_name.casefold()]
    groups: dict[str, dict[str, Any]] = {}
    for model in models:
        group = groups.setdefault(model.provider, {
            "id": model.provider, "display_name": model.provider_label,
            "available": endpoints.is_known(model.provider) and endpoints.provider_is_configured(model.provider),
            "models": 0,
        })
        group["models"] += 1
    return {"models": [m.payload() for m in models], "default": settings.CHATLIMA_DEFAULT_MODEL,
            "providers": list(groups.values())}
