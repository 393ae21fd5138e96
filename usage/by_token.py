"""Usage broken down by API token and by door (README "API tokens"): the usage API's `by_token` and
`by_door`, the `api_token` filter, the dashboard's and the admin report's per-token table.

Read-only, scoped to one user (the admin report: to all users); costs stay Decimal until
`money_str`. A row without a token came through a browser session.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce

from accounts.models import ApiToken
from chatlima.errors import ClientError
from chatlima.formats import money_str
from usage.models import ApiUsageLog

SESSION_LABEL = "Browser session"
MAX_TOKEN_ID = 2**63 - 1


def token_filter(user, value: str | None) -> int | None:
    """The `api_token` query parameter: a token id (a stranger's, or an unknown one, matches no row);
    anything but a whole number from 1 to MAX_TOKEN_ID is 400."""
    if value is None:
        return None
    pk = int(value) if value.isascii() and value.isdigit() else 0
    if not 1 <= pk <= MAX_TOKEN_ID:
        raise ClientError("INVALID_MESSAGE", "api_token must be the id of one of your API tokens.",
                          {"api_token": "invalid"})
    return pk


def label_of(name: str | None, token_key: str | None) -> str:
    if token_key is None:
        return SESSION_LABEL
    return ApiToken(name=name or "", token_key=token_key).label


def _figures(rows: QuerySet[ApiUsageLog], group: str) -> list[dict[str, Any]]:
    counts = ApiUsageLog.outcome_counts()
    return list(rows.values(*group.split(",")).annotate(
        requests=counts["requests"], errors=counts["errors"],
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0), completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        total_tokens=Coalesce(Sum("total_tokens"), 0), cached_tokens=Coalesce(Sum("cached_tokens"), 0),
        reasoning_tokens=Coalesce(Sum("reasoning_tokens"), 0),
        cost=Coalesce(Sum("cost_estimate"), Decimal("0")),
    ).order_by("-total_tokens"))


def _money(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "cost": money_str(row["cost"])}


def stats_by_token(rows: QuerySet[ApiUsageLog]) -> list[dict[str, Any]]:
    """Finished rows' figures per API token (`api_token_id` null: a browser session), most used first."""
    out = []
    for row in _figures(rows.finished(), "api_token_id,api_token__name,api_token__token_key"):
        name, key = row.pop("api_token__name"), row.pop("api_token__token_key")
        out.append(_money({"api_token_id": row.pop("api_token_id"), "label": label_of(name, key), **row}))
    return out


def stats_by_door(rows: QuerySet[ApiUsageLog]) -> list[dict[str, Any]]:
    """Finished rows' figures per door (`metadata.door`; rows from before doors were recorded: null)."""
    rows = rows.finished().annotate(door=KeyTextTransform("door", "metadata"))
    return [_money(row) for row in _figures(rows, "door")]


def tokens_with_usage(user, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The dashboard's table: each of the user's live tokens, and each revoked one that was used,
    with what it used in [since, until), then the browser session's share."""
    rows = ApiUsageLog.objects.filter(user=user, created_at__gte=since, created_at__lt=until)
    used = {row["api_token_id"]: row for row in stats_by_token(rows)}
    table = []
    for token in ApiToken.objects.for_user(user).select_related("auth_token"):
        if token.revoked_at is not None and token.pk not in used:
            continue
        figures = used.get(token.pk) or {"requests": 0, "total_tokens": 0, "cost": money_str(Decimal("0"))}
        table.append({"token": token, "label": token.label, "live": token.revoked_at is None, **figures})
    if None in used:
        table.append({"token": None, "label": SESSION_LABEL, "live": True, **used[None]})
    return table


def rows_between(start: date, end: date) -> QuerySet[ApiUsageLog]:
    """Every user's rows of the UTC days [start, end] (the admin report's range)."""
    since = datetime.combine(start, time.min, UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, UTC)
    return ApiUsageLog.objects.filter(created_at__gte=since, created_at__lt=until)


def admin_by_token(rows: QuerySet[ApiUsageLog]) -> list[dict[str, Any]]:
    """The admin report's table: every user's tokens' figures, most used first."""
    out = []
    grouped = rows.finished().values("user__username", "api_token_id", "api_token__name", "api_token__token_key")
    for row in grouped.annotate(requests=Count("pk"), total_tokens=Coalesce(Sum("total_tokens"), 0),
                                cost=Coalesce(Sum("cost_estimate"), Decimal("0"))).order_by("-total_tokens")[:100]:
        out.append({"username": row["user__username"], "api_token_id": row["api_token_id"],
                    "label": label_of(row["api_token__name"], row["api_token__token_key"]),
                    "requests": row["requests"], "total_tokens": row["total_tokens"], "cost": money_str(row["cost"])})
    return out
