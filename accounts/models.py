"""Users, their budgets, and the holds that exchanges place on a budget."""

from __future__ import annotations

import unicodedata
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import models as auth_models
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone.")


def default_timezone() -> str:
    return settings.CHATLIMA_DEFAULT_TIMEZONE


def canonical_username(username: str) -> str:
    """The one spelling of a username that logins, sign-up and lockouts compare.

    NFKC, surrounding whitespace stripped, case-folded: 'Victim ', ' victim', 'victim\t' and 'VICTIM'
    are all the account 'victim'. Identity (`UserManager.get_by_natural_key`) and the lockout counts
    (accounts.login_throttle) use this same function, so no spelling that reaches an account can
    count its failures anywhere else.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).strip().casefold())
    return folded.strip()


class UserQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for user in objs:
            user.username_key = canonical_username(user.username)
        return super().bulk_create(objs, *args, **kwargs)


class UserManager(auth_models.UserManager.from_queryset(UserQuerySet)):
    def get_by_natural_key(self, username):
        """The user whose canonical username matches (what ModelBackend, and so every login, looks up)."""
        if not isinstance(username, str):
            raise self.model.DoesNotExist
        return self.get(username_key=canonical_username(username))


class User(AbstractUser):
    # Days in reports, rollups and budget periods are this user's days.
    timezone = models.CharField(max_length=64, default=default_timezone, validators=[validate_timezone])
    # canonical_username(username): unique, so two sign-ups that differ only by case or whitespace
    # cannot both succeed, even at the same moment. The username itself is kept as the user typed it.
    username_key = models.TextField(unique=True, editable=False)

    objects = UserManager()

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @classmethod
    def normalize_username(cls, username):
        username = super().normalize_username(username)
        return username.strip() if isinstance(username, str) else username

    def save(self, *args, **kwargs) -> None:
        self.username_key = canonical_username(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key"}
        super().save(*args, **kwargs)

    def validate_unique(self, exclude=None) -> None:
        """Also refuse a username another account already has up to case and whitespace (every form asks this)."""
        super().validate_unique(exclude=exclude)
        if (exclude and "username" in exclude) or not isinstance(self.username, str):
            return
        taken = type(self)._default_manager.filter(username_key=canonical_username(self.username))
        if taken.exclude(pk=self.pk).exists():
            raise ValidationError({"username": [self.unique_error_message(type(self), ("username",))]})


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


def sign_up(form) -> User | None:
    """Save a valid sign-up form (accounts.forms.SignupForm) as a new user with a default budget.

    Transaction: one atomic block of its own; no lock. The form has already refused a taken username;
    a sign-up racing for the same canonical name meets the unique `username_key`, and then this adds
    the same "already exists" error to the form and returns None, never a 500.
    """
    try:
        with transaction.atomic():
            user = form.save()
            Budget.objects.for_user(user)
    except IntegrityError:
        form.add_error("username", form.instance.unique_error_message(User, ("username",)))
        return None
    return user
