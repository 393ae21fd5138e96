"""The usage dashboard page (the signed-in user's figures from the daily rollups), and dismissing a budget alert."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from chatlima.formats import quantize_money, utc_iso
from usage import alerts, by_token
from usage.budgets import budget_payload
from usage.charts import DayPoint, daily_chart
from usage.models import BudgetAlert, DailyUsageRollup

DEFAULT_DAYS = 30
MAX_DAYS = 366
THOUSAND = Decimal(1000)


class RangeForm(forms.Form):
    start_date = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end_date = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("start_date"), data.get("end_date")
        if start and end:
            if start > end:
                raise forms.ValidationError("The start date must not be after the end date.")
            if (end - start).days + 1 > MAX_DAYS:
                raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        return data


def user_today(user) -> date:
    """Days are the user's days: the rollups are kept per user-local day."""
    return timezone.now().astimezone(user.tzinfo).date()


def chosen_range(user, form: RangeForm) -> tuple[date, date]:
    today = user_today(user)
    if not form.is_valid():
        return today - timedelta(days=DEFAULT_DAYS - 1), today
    end = form.cleaned_data.get("end_date") or today
    start = form.cleaned_data.get("start_date") or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        start = end
    return start, end


def export_range(user, start: date, end: date) -> dict[str, str]:
    """The CSV endpoint reads bare dates as UTC days; send the user's local days as exact instants instead."""
    tz = user.tzinfo
    first = datetime.combine(start, time.min, tz).astimezone(UTC)
    # end_date is inclusive to the microsecond: the last instant before the next local midnight.
    last = datetime.combine(end + timedelta(days=1), time.min, tz).astimezone(UTC) - timedelta(microseconds=1)

    return {"start_date": utc_iso(first, "microseconds"), "end_date": utc_iso(last, "microseconds")}


def _money(value: Decimal | None) -> Decimal:
    return Decimal("0") if value is None else quantize_money(value)


def dashboard_figures(user, start: date, end: date) -> dict[str, Any]:
    """Totals, one point per day (empty days at zero) and a row per model, all from the rollups."""
    rollups = DailyUsageRollup.objects.filter(user=user, day__gte=start, day__lte=end)
    sums = rollups.aggregate(
        requests=Sum("requests"), errors=Sum("errors"), cancelled=Sum("cancelled"),
        prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"),
        total_tokens=Sum("total_tokens"), reasoning_tokens=Sum("reasoning_tokens"), cost=Sum("cost"),
    )
    totals = {key: (value or 0) for key, value in sums.items() if key != "cost"}
    totals["cost"] = _money(sums["cost"])

    per_day = {
        row["day"]: row
        for row in rollups.values("day").annotate(tokens=Sum("total_tokens"), cost=Sum("cost"))
    }
    points = []
    day = start
    while day <= end:
        row = per_day.get(day)
        points.append(DayPoint(day=day, tokens=int(row["tokens"]) if row else 0, cost=_money(row["cost"] if row else None)))
        day += timedelta(days=1)

    models = []
    for row in rollups.values("provider", "model_name").annotate(
        requests=Sum("requests"), prompt_tokens=Sum("prompt_tokens"), completion_tokens=Sum("completion_tokens"),
        total_tokens=Sum("total_tokens"), cost=Sum("cost"),
    ).order_by("-total_tokens", "model_name"):
        requests = row["requests"] or 0
        tokens = row["total_tokens"] or 0
        cost = _money(row["cost"])
        models.append({
            **row,
            "cost": cost,
            "tokens_per_request": round(tokens / requests, 1) if requests else 0,
            "cost_per_1k": quantize_money(cost * THOUSAND / tokens) if tokens else None,
        })
    return {"totals": totals, "points": points, "models": models}


def _budget(user) -> dict[str, Any]:
    data = dict(budget_payload(user))
    limit, used = data.get("token_limit"), data.get("total_tokens_used") or 0
    data["percent_used"] = min(100, round(100 * used / limit)) if limit else 0
    period_end = parse_datetime(data["period_end"]) if data.get("period_end") else None
    data["resets_at"] = period_end.astimezone(user.tzinfo) if period_end else None
    return data


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    form = RangeForm(request.GET or None)
    start, end = chosen_range(request.user, form)
    figures = dashboard_figures(request.user, start, end)
    export_query = urlencode(export_range(request.user, start, end))
    since = datetime.combine(start, time.min, request.user.tzinfo)
    until = datetime.combine(end + timedelta(days=1), time.min, request.user.tzinfo)
    return render(request, "usage/dashboard.html", {
        "form": form if request.GET else RangeForm(initial={"start_date": start, "end_date": end}),
        "start": start,
        "end": end,
        "timezone": request.user.timezone,
        "totals": figures["totals"],
        "points": figures["points"],
        "models": figures["models"],
        "chart": daily_chart(figures["points"]),
        "budget": _budget(request.user),
        "export_url": f"/api/v1/usage/export.csv?{export_query}",
        "api_tokens": by_token.tokens_with_usage(request.user, since, until),
        "new_api_token": request.session.pop("new_api_token", None),
    })


@login_required
@require_POST
def dismiss_alert(request: HttpRequest, alert_id: int):
    get_object_or_404(BudgetAlert, pk=alert_id, user=request.user)
    alerts.dismiss(request.user, alert_id)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"dismissed": alert_id})
    back = request.POST.get("next") or request.headers.get("Referer") or "/"
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = "/"
    return HttpResponseRedirect(back)
