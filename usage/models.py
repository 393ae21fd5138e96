"""Usage rows (one per provider call), the price table, daily rollups, budgets and their holds."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Count, Q
from django.utils import timezone

from usage.endpoints import provider_is_configured  # noqa: F401 - its callers import it from here

MONEY = {"max_digits": 16, "decimal_places": 8}


class ApiUsageLogQuerySet(models.QuerySet):
    def finished(self) -> ApiUsageLogQuerySet:
        """Rows of exchanges that have finished, whatever their outcome; a pending one is still streaming."""
        return self.exclude(status=ApiUsageLog.Status.PENDING)


class ApiUsageLog(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCESS = "success"
        ERROR = "error"
        TIMEOUT = "timeout"
        RATE_LIMITED = "rate_limited"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    # What each status counts as, decided once (see `outcome_counts`).
    ERROR_STATUSES = (Status.ERROR, Status.TIMEOUT, Status.RATE_LIMITED, Status.INTERRUPTED)

    class Source(models.TextChoices):
        PROVIDER = "provider"
        ESTIMATE = "estimate"
        NONE = "none"  # nothing arrived and the provider reported nothing: nothing is charged

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The user message's id; like every client id it is unique per user.
    request_id = models.CharField(max_length=64)
    # No index of their own: `usage_request_unique_per_user` and `idx_usage_user` lead with the user,
    # `idx_usage_conversation` is the conversation's; each index is written on every insert and settle.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_logs",
                             db_index=False)
    conversation = models.ForeignKey(
        "chat.Conversation", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_logs",
        db_index=False,
    )
    message = models.ForeignKey(
        "chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_logs"
    )
    provider = models.CharField(max_length=32)
    model_name = models.CharField(max_length=128)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost_estimate = models.DecimalField(**MONEY, null=True, blank=True)
    actual_cost = models.DecimalField(**MONEY, null=True, blank=True)
    response_time_ms = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    usage_source = models.CharField(max_length=16, choices=Source.choices, default=Source.ESTIMATE)
    error_message = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # When the settle moved the row out of `pending` (null while pending, and on rows settled before
    # this column): the beat's rollup refresh finds the users to refresh by it (usage.rollups.refresh_active).
    settled_at = models.DateTimeField(null=True, blank=True)
    # The API token the exchange came through (null: a browser session); its door is metadata.door.
    api_token = models.ForeignKey(
        "accounts.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_logs"
    )

    objects = ApiUsageLogQuerySet.as_manager()

    class Meta:
        db_table = "api_usage_logs"
        constraints = [
            models.UniqueConstraint(fields=["user", "request_id"], name="usage_request_unique_per_user"),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="idx_usage_user"),
            models.Index(fields=["conversation"], name="idx_usage_conversation"),
            models.Index(fields=["status", "-created_at"], name="idx_usage_status"),
            models.Index(fields=["-created_at"], name="idx_usage_date"),
            models.Index(fields=["settled_at"], name="idx_usage_settled", condition=models.Q(settled_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} {self.status} {self.request_id}"

    @staticmethod
    def outcome_counts() -> dict[str, Count]:
        """The request, error and cancellation counts every figure uses (API, dashboard, rollups, report).

        - requests: every finished row, whatever its outcome; `pending` (still streaming) is not counted.
        - errors: `error`, `timeout`, `rate_limited` and `interrupted`: the exchange failed on the
          provider's or the server's side (an interrupted one was cut by a server restart).
        - cancelled: `cancelled`, the user chose to stop: counted apart, never an error.
        `success` counts as a request only; `pending` is neither an error nor a request.
        """
        return {
            "requests": Count("pk", filter=~Q(status=ApiUsageLog.Status.PENDING)),
            "errors": Count("pk", filter=Q(status__in=ApiUsageLog.ERROR_STATUSES)),
            "cancelled": Count("pk", filter=Q(status=ApiUsageLog.Status.CANCELLED)),
        }


class ModelPrice(models.Model):
    """An administrator's price for a model per million tokens, from its effective date: it overrides
    every other source (usage/pricing.py). A price for a model no provider lists puts that model in
    the catalogue under `provider`."""

    provider = models.CharField(max_length=32)
    model_id = models.CharField(max_length=128)
    display_name = models.CharField(max_length=128)
    context_window = models.PositiveIntegerField(default=0)
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    reasoning_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    effective_date = models.DateField()
    is_active = models.BooleanField(default=True, help_text="Applied; switch off to fall back to the other price sources.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_id", "effective_date"], name="one_price_per_model_per_day"),
        ]
        ordering = ["provider", "model_id", "-effective_date"]

    def __str__(self) -> str:
        return f"{self.model_id} from {self.effective_date}"


class CatalogueEntry(models.Model):
    """A model one provider serves, as that provider's own catalogue lists it (`refresh_models`).

    Never deleted: a model the provider stops listing is marked `listed=False` (unavailable) and its
    usage rows keep pointing at it; listed again, it comes back.
    """

    provider = models.CharField(max_length=32)
    model_id = models.CharField(max_length=128)
    display_name = models.CharField(max_length=200)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    listed = models.BooleanField(default=True, help_text="Listed by its provider at the last refresh.")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never listed by a refresh (seeded).")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="one_catalogue_entry_per_provider_model"),
        ]
        indexes = [models.Index(fields=["model_id"], name="idx_catalogue_model")]
        ordering = ["provider", "display_name"]
        verbose_name_plural = "catalogue entries"

    def __str__(self) -> str:
        return f"{self.provider}: {self.model_id}"


class ProviderPrice(models.Model):
    """A provider's own list price for one of its models (OpenRouter's catalogue), per million tokens,
    from the day a refresh first saw it until a later row replaces it."""

    entry = models.ForeignKey(CatalogueEntry, on_delete=models.CASCADE, related_name="prices")
    effective_date = models.DateField()
    input_per_mtok = models.DecimalField(max_digits=14, decimal_places=8)
    output_per_mtok = models.DecimalField(max_digits=14, decimal_places=8)
    cached_input_per_mtok = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    cache_write_per_mtok = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    reasoning_per_mtok = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["entry", "effective_date"], name="one_provider_price_per_entry_per_day"),
        ]
        ordering = ["entry", "-effective_date"]

    def __str__(self) -> str:
        return f"{self.entry_id} from {self.effective_date}"


class Repricing(models.Model):
    """What one deliberate repricing of a period changed (chat/repricing.py), kept as its log."""

    created_at = models.DateTimeField(default=timezone.now)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    start = models.DateField()
    end = models.DateField()
    provider = models.CharField(max_length=32, blank=True)
    model_name = models.CharField(max_length=128, blank=True)
    rows_examined = models.PositiveIntegerField(default=0)
    rows_changed = models.PositiveIntegerField(default=0)
    cost_before = models.DecimalField(**MONEY, default=Decimal("0"))
    cost_after = models.DecimalField(**MONEY, default=Decimal("0"))
    # Per (provider, model): rows changed and their cost before and after, as decimal strings.
    changes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"repricing of {self.start}..{self.end} ({self.rows_changed} rows)"


class RollupFigures(models.Model):
    """The figures every rollup carries, recomputed (never incremented) from the finished raw rows.

    `requests`, `errors` and `cancelled` are counted as `ApiUsageLog.outcome_counts` decides.
    """

    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY, default=Decimal("0"))
    actual_cost = models.DecimalField(**MONEY, null=True, blank=True)
    # The list-price estimate of the rows that carry a billed cost: set against `actual_cost` it
    # shows how far the prices are off (the admin report's reconciliation).
    billed_estimate = models.DecimalField(**MONEY, null=True, blank=True)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class DailyUsageRollup(RollupFigures):
    """Usage summed per (user's local day, user, provider, model), recomputed from the raw rows."""

    day = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage")
    provider = models.CharField(max_length=32)
    model_name = models.CharField(max_length=128)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "user", "provider", "model_name"], name="one_rollup_per_day_user_model"),
        ]
        indexes = [models.Index(fields=["day"]), models.Index(fields=["user", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.user_id} {self.model_name}"


class BudgetAlert(models.Model):
    """A notice that a user's usage crossed 80% or 100% of a budget limit: at most one per threshold per period."""

    class Threshold(models.IntegerChoices):
        WARNING = 80
        REACHED = 100

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget_alerts")
    threshold = models.PositiveSmallIntegerField(choices=Threshold.choices)
    period_start = models.DateTimeField()
    message = models.CharField(max_length=255)
    tokens_used = models.BigIntegerField(default=0)
    token_limit = models.BigIntegerField(null=True, blank=True)
    cost_used = models.DecimalField(**MONEY, default=Decimal("0"))
    cost_limit = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    emailed_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "threshold", "period_start"], name="one_budget_alert_per_threshold_per_period"
            ),
        ]
        indexes = [models.Index(fields=["user", "dismissed_at"])]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.threshold}% alert for {self.user_id} ({self.period_start:%Y-%m-%d})"


class DailyModelRollup(RollupFigures):
    """The daily rollups summed over all users per (day, provider, model): what the admin report reads
    for its totals and breakdowns, so a report costs a few hundred rows however many users there are."""

    day = models.DateField()
    provider = models.CharField(max_length=32)
    model_name = models.CharField(max_length=128)
    users = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "provider", "model_name"], name="one_model_rollup_per_day"),
        ]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model_name}"


class BudgetQuerySet(models.QuerySet):
    def for_user(self, user) -> Budget:
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
        db_table = "accounts_budget"  # where it was created; moved here, beside its rules, in 0006
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

    # No index of its own: `reservation_request_unique_per_user` leads with the user.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reservations",
                             db_index=False)
    request_id = models.CharField(max_length=64)
    tokens = models.BigIntegerField()
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal("0"))
    state = models.CharField(max_length=16, choices=State.choices, default=State.HELD)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    # The API token whose own budget this hold also counts against (usage.budgets.reserve).
    api_token = models.ForeignKey("accounts.ApiToken", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="reservations")

    class Meta:
        db_table = "accounts_budgetreservation"  # where it was created; moved here in 0006
        indexes = [models.Index(fields=["state", "expires_at"], name="accounts_bu_state_344926_idx")]
        constraints = [
            models.UniqueConstraint(fields=["user", "request_id"], name="reservation_request_unique_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.state} {self.tokens} tokens for {self.request_id}"
