"""Budget alerts: one notice per threshold (80%, 100%) per budget period, in the app and by email.

Locking contract: a threshold is claimed with one compare-and-set UPDATE on the
budget row (`alert_<n>_sent_at` empty or older than `period_start` -> now), so
of two settles racing over the same threshold exactly one sends the notice. A
new period (budgets.py moves `period_start` forward on rollover) makes the old
stamps stale, so the thresholds arm again without anyone clearing them.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from chatlima.formats import money_display
from usage.models import Budget, BudgetAlert

logger = logging.getLogger(__name__)

THRESHOLDS = (100, 80)  # highest first: crossing both at once sends only the 100% notice


def usage_ratio(budget: Budget) -> Decimal | None:
    """The larger of tokens used / token limit and cost used / cost limit; None when unlimited."""
    ratios = []
    if budget.token_limit:
        ratios.append(Decimal(budget.tokens_used) / Decimal(budget.token_limit))
    if budget.cost_limit:
        ratios.append(Decimal(budget.cost_used) / Decimal(budget.cost_limit))
    return max(ratios) if ratios else None


def _claim(budget: Budget, threshold: int, now) -> bool:
    field = f"alert_{threshold}_sent_at"
    unsent = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": F("period_start")})
    return Budget.objects.filter(pk=budget.pk, period_start=budget.period_start).filter(unsent).update(**{field: now}) == 1


def _describe(budget: Budget, threshold: int) -> str:
    parts = []
    if budget.token_limit:
        parts.append(f"{budget.tokens_used:,} of {budget.token_limit:,} tokens")
    if budget.cost_limit:
        parts.append(f"${money_display(budget.cost_used)} of ${money_display(budget.cost_limit)}")
    used = " and ".join(parts)
    if threshold >= 100:
        return f"You have used your whole {budget.period} budget ({used}). New requests will be refused until it resets."
    return f"You have used {threshold}% of your {budget.period} budget ({used})."


def check_budget_alerts(user_id: int, budget: Budget | None = None) -> list[BudgetAlert]:
    """Send the alerts a user's budget now calls for; returns the alerts created (usually none).

    A caller that has just read the budget passes it, which saves the read.
    """
    budget = budget or Budget.objects.filter(user_id=user_id).select_related("user").first()
    if budget is None:
        return []
    ratio = usage_ratio(budget)
    if ratio is None:
        return []
    now = timezone.now()
    created: list[BudgetAlert] = []
    notify = True
    for threshold in THRESHOLDS:
        if ratio * 100 < threshold:
            continue
        if not _claim(budget, threshold, now):
            notify = False  # already sent this period; lower thresholds were claimed with it
            continue
        if not notify:
            continue
        notify = False  # a 100% notice also stands for the 80% one
        alert = _record(budget, threshold)
        if alert is not None:
            created.append(alert)
    return created


def _record(budget: Budget, threshold: int) -> BudgetAlert | None:
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                user=budget.user,
                threshold=threshold,
                period_start=budget.period_start,
                message=_describe(budget, threshold),
                tokens_used=budget.tokens_used,
                token_limit=budget.token_limit,
                cost_used=budget.cost_used,
                cost_limit=budget.cost_limit,
            )
    except IntegrityError:
        return None  # this period's notice exists already (the stamps were cleared by hand)
    transaction.on_commit(lambda: _email(alert), robust=True)
    return alert


def _email(alert: BudgetAlert) -> None:
    email = alert.user.email
    if not email:
        return  # the in-app notice is all such a user gets
    try:
        send_mail(
            subject=f"ChatLima: {alert.threshold}% of your budget used",
            message=alert.message,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[email],
        )
    except Exception:
        logger.exception("budget alert email to user %s failed", alert.user_id)
        return
    BudgetAlert.objects.filter(pk=alert.pk).update(emailed_at=timezone.now())


def dismiss(user, alert_id: int) -> bool:
    return BudgetAlert.objects.filter(pk=alert_id, user=user, dismissed_at__isnull=True).update(
        dismissed_at=timezone.now()
    ) == 1
