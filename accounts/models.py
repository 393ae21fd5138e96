"""Users, their budgets, and the holds that exchanges place on a budget."""

from __future__ import annotations

import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone.")


def default_timezone() -> str:
    return settings.CHATLIMA_DEFAULT_TIMEZONE


class User(AbstractUser):
    # Days in reports, rollups and budget periods are this user's days.
    timezone = models.CharField(max_length=64, default=default_timezone, validators=[validate_timezone])

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class BudgetQuerySet(models.QuerySet):
    def for_user(self, user: User) -> Budget:
        """The user's budget, created with the defaults from settings on first use."""
        budget, _ = self.get_or_create(user=user, defaults=Budget.defaults())
        return budget


class Budget(models.Model):
    class Period(models.TextChoices):
        DAILY = "daily"
        WEEKLY = "weekly"
        MONTHLY = "monthly"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget")
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MONTHLY)
    token_limit = models.BigIntegerField(null=True, blank=True, help_text="Empty means unlimited.")
    cost_limit = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="USD per period; empty means unlimited."
    )
    period_start = models.DateTimeField(default=timezone.now)
    last_reset_at = models.DateTimeField(null=True, blank=True)
    tokens_used = models.BigIntegerField(default=0)
    cost_used = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal("0"))
    # What open reservations hold, so a check sees used + held.
    tokens_held = models.BigIntegerField(default=0)
    cost_held = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal("0"))
    alert_80_sent_at = models.DateTimeField(null=True, blank=True)
    alert_100_sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BudgetQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(tokens_used__gte=0), name="budget_tokens_used_nonnegative"),
            models.CheckConstraint(condition=models.Q(tokens_held__gte=0), name="budget_tokens_held_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"budget of {self.user}"

    @staticmethod
    def defaults() -> dict:
        return {
            "period": settings.CHATLIMA_DEFAULT_BUDGET_PERIOD,
            "token_limit": settings.CHATLIMA_DEFAULT_MONTHLY_TOKEN_LIMIT,
            "cost_limit": settings.CHATLIMA_DEFAULT_MONTHLY_COST_LIMIT,
        }

    @property
    def remaining_tokens(self) -> int | None:
        if self.token_limit is None:
            return None
        return max(self.token_limit - self.tokens_used, 0)


class BudgetReservation(models.Model):
    """A hold on a budget for one exchange: held -> settled / released / expired."""

    class State(models.TextChoices):
        HELD = "held"
        SETTLED = "settled"
        RELEASED = "released"
        EXPIRED = "expired"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reservations")
    request_id = models.CharField(max_length=64)
    tokens = models.BigIntegerField()
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal("0"))
    state = models.CharField(max_length=16, choices=State.choices, default=State.HELD)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "expires_at"])]
        constraints = [
            models.UniqueConstraint(fields=["user", "request_id"], name="reservation_request_unique_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.tokens} tokens for {self.request_id}"
