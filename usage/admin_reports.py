"""The admin's usage report: figures over a date range, read from the daily rollups only.

Every breakdown is one GROUP BY over `DailyUsageRollup` (a few rows per user per
day), never over the raw usage rows, so the page stays fast however many rows
the log holds. The chart is inline SVG drawn here: no script, no CDN.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import DecimalField, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from chatlima.formats import money_display, money_str
from usage.charts import ChartBox, DayPoint, daily_chart
from usage.models import DailyModelRollup, DailyUsageRollup

MAX_DAYS = 366
TOP_USERS = 20
MONEY = DecimalField(max_digits=20, decimal_places=8)
SUMS = {
    "requests": Coalesce(Sum("requests"), 0),
    "errors": Coalesce(Sum("errors"), 0),
    "cancelled": Coalesce(Sum("cancelled"), 0),
    "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
    "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
    "total_tokens": Coalesce(Sum("total_tokens"), 0),
    "cached_tokens": Coalesce(Sum("cached_tokens"), 0),
    "reasoning_tokens": Coalesce(Sum("reasoning_tokens"), 0),
    "cost": Coalesce(Sum("cost"), Value(Decimal("0")), output_field=MONEY),
    "actual_cost": Sum("actual_cost"),
}
INTEGER_FIGURES = ("requests", "errors", "cancelled", "prompt_tokens", "completion_tokens", "total_tokens")
MONEY_FIGURES = ("cost", "actual_cost", "billed_estimate", "variance")
CSV_FIGURES = [
    "requests", "errors", "cancelled", "error_rate", "cancel_rate", "prompt_tokens", "completion_tokens",
    "total_tokens", "cached_tokens", "reasoning_tokens", "cost", "actual_cost", "billed_estimate", "variance",
]


class ReportForm(forms.Form):
    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))

    @staticmethod
    def default_range() -> dict[str, date]:
        today = timezone.now().astimezone(UTC).date()
        return {"start": today - timedelta(days=29), "end": today}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if start > end:
                raise forms.ValidationError("The start must not be after the end.")
            if (end - start).days >= MAX_DAYS:
                raise forms.ValidationError(f"Pick at most {MAX_DAYS} days.")
        return data


REPORT_CHART = ChartBox(width=900, height=240, pad_left=70, pad_right=80, pad_top=16, pad_bottom=36)


def _with_rates(row: dict[str, Any]) -> dict[str, Any]:
    requests = row.get("requests") or 0
    row["error_rate"] = (Decimal(row["errors"]) / requests * 100).quantize(Decimal("0.1")) if requests else Decimal("0")
    row["cancel_rate"] = (
        (Decimal(row["cancelled"]) / requests * 100).quantize(Decimal("0.1")) if requests else Decimal("0")
    )
    # Formatted here, not with template filters: a 90-day page has thousands of figures.
    # Money by the pages' one display rule (the dashboard and the chat page use it too).
    row["show"] = {name: f"{row[name]:,}" for name in INTEGER_FIGURES}
    row["show"]["cost"] = money_display(row["cost"])
    row["show"]["actual_cost"] = "—" if row["actual_cost"] is None else money_display(row["actual_cost"])
    return row


@dataclass
class Report:
    start: date
    end: date
    totals: dict[str, Any]
    days: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_provider: list[dict[str, Any]]
    by_user: list[dict[str, Any]]
    chart: dict[str, Any] = field(default_factory=dict)
    reconciliation: list[dict[str, Any]] = field(default_factory=list)


def _add(into: dict[str, Any], row: dict[str, Any]) -> None:
    for name in SUMS:
        value = row[name]
        if name == "actual_cost":
            if value is not None:
                into[name] = (into.get(name) or Decimal("0")) + value
        else:
            into[name] = into.get(name, 0) + value


def _zero(**keys: Any) -> dict[str, Any]:
    return {**{name: 0 for name in SUMS}, "cost": Decimal("0"), "actual_cost": None, **keys}


def build_report(start: date, end: date) -> Report:
    """Every figure but the per-user ones is summed from the (day, provider, model) rollups, a few
    hundred rows; the top users come from the per-user rollups, ranked on two sums first."""
    rollups: QuerySet = DailyUsageRollup.objects.filter(day__gte=start, day__lte=end)
    totals = _zero()
    per_day: dict[date, dict[str, Any]] = {}
    per_model: dict[tuple[str, str], dict[str, Any]] = {}
    per_provider: dict[str, dict[str, Any]] = {}
    per_model_rows = DailyModelRollup.objects.filter(day__gte=start, day__lte=end)
    for row in per_model_rows.values("day", "provider", "model_name", *SUMS).order_by():
        _add(totals, row)
        _add(per_day.setdefault(row["day"], _zero(day=row["day"])), row)
        key = (row["provider"], row["model_name"])
        _add(per_model.setdefault(key, _zero(provider=key[0], model_name=key[1])), row)
        _add(per_provider.setdefault(row["provider"], _zero(provider=row["provider"])), row)
    days = [
        _with_rates(per_day.get(day) or _zero(day=day))
        for day in (start + timedelta(days=n) for n in range((end - start).days + 1))
    ]

    def biggest_first(rows, *names: str) -> list[dict[str, Any]]:
        ordered = sorted(rows, key=lambda r: tuple(r[n] for n in names))
        return [_with_rates(r) for r in sorted(ordered, key=lambda r: (r["cost"], r["total_tokens"]), reverse=True)]

    by_model = biggest_first(per_model.values(), "provider", "model_name")
    by_provider = biggest_first(per_provider.values(), "provider")
    # Rank on the two figures the order needs, then sum the rest for the top users only.
    ranked = list(
        rollups.values("user_id")
        .annotate(cost=SUMS["cost"], total_tokens=SUMS["total_tokens"])
        .order_by("-cost", "-total_tokens", "user_id")
        .values_list("user_id", flat=True)[:TOP_USERS]
    )
    figures = {r["user_id"]: r for r in rollups.filter(user_id__in=ranked).values("user_id").annotate(**SUMS).order_by()}
    top = [figures[user_id] for user_id in ranked]
    names = dict(
        get_user_model().objects.filter(pk__in=[r["user_id"] for r in top]).values_list("pk", "username")
    )
    by_user = [_with_rates({**row, "user__username": names.get(row["user_id"], "")}) for row in top]
    report = Report(start, end, _with_rates(totals), days, by_model, by_provider, by_user)
    report.chart = daily_chart([DayPoint(d["day"], d["total_tokens"], d["cost"]) for d in days], REPORT_CHART, narrow=None)
    report.reconciliation = reconciliation(per_model_rows)
    return report


def reconciliation(per_model_rows: QuerySet) -> list[dict[str, Any]]:
    """Where the provider billed (OpenRouter's `cost`): per model and day, what it billed against
    the list-price estimate of the same rows, and the variance, so a stale or wrong price shows."""
    rows = []
    billed = per_model_rows.filter(actual_cost__isnull=False).order_by("day", "provider", "model_name")
    for row in billed.values("day", "provider", "model_name", "actual_cost", "billed_estimate"):
        estimate, actual = row["billed_estimate"], row["actual_cost"]
        variance = None if estimate is None else actual - estimate
        percent = (variance / estimate * 100).quantize(Decimal("0.1")) if variance is not None and estimate else None
        rows.append({**row, "variance": variance, "variance_percent": percent, "show": {
            "actual_cost": money_display(actual),
            "billed_estimate": "price unknown" if estimate is None else money_display(estimate),
            "variance": "—" if variance is None else ("+" if variance > 0 else "") + money_display(variance),
            "variance_percent": "—" if percent is None else f"{percent:+}%",
        }})
    return rows



def report_csv(report: Report) -> str:
    """The figures the page shows, one section per table; money as the API spells it (`money_str`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", *CSV_FIGURES])

    def cell(row: dict[str, Any], name: str) -> Any:
        value = row.get(name)
        if value is None:
            return ""
        return money_str(value) if name in MONEY_FIGURES else value

    def write(section: str, key: str, row: dict[str, Any]) -> None:
        writer.writerow([section, key, *(cell(row, f) for f in CSV_FIGURES)])

    write("total", f"{report.start}..{report.end}", report.totals)
    for row in report.days:
        write("day", row["day"].isoformat(), row)
    for row in report.by_provider:
        write("provider", row["provider"], row)
    for row in report.by_model:
        write("model", f"{row['provider']}/{row['model_name']}", row)
    for row in report.by_user:
        write("user", row["user__username"], row)
    for row in report.reconciliation:
        write("reconciliation", f"{row['day'].isoformat()}/{row['provider']}/{row['model_name']}",
              {name: row.get(name) for name in ("actual_cost", "billed_estimate", "variance")})
    return out.getvalue()
