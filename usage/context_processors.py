from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from usage.models import BudgetAlert

SHOWN = 5


def budget_alerts(request: HttpRequest) -> dict:
    """The signed-in user's undismissed budget alerts, for `usage/_alerts.html`; lazy, so pages that skip it pay nothing."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"budget_alerts": []}

    def alerts() -> list[BudgetAlert]:
        return list(BudgetAlert.objects.filter(user=user, dismissed_at__isnull=True)[:SHOWN])

    return {"budget_alerts": SimpleLazyObject(alerts)}
