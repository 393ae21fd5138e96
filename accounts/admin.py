from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import Budget, BudgetReservation, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = BaseUserAdmin.fieldsets + (("ChatLima", {"fields": ("timezone",)}),)
    list_display = ("username", "email", "timezone", "is_staff", "date_joined")


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("user", "period", "token_limit", "tokens_used", "tokens_held", "cost_limit", "cost_used", "period_start")
    list_filter = ("period",)
    search_fields = ("user__username",)
    readonly_fields = ("tokens_used", "tokens_held", "cost_used", "cost_held", "updated_at")
    actions = ["reset_budget_period"]

    @admin.action(description="Reset the current period's usage (and re-arm its alerts)")
    def reset_budget_period(self, request, queryset):
        from django.utils import timezone

        # The period boundaries stay (budgets.py keeps them on the user's local calendar);
        # the figures restart from zero and the 80%/100% alerts can fire again.
        count = queryset.update(
            tokens_used=0, cost_used=0, last_reset_at=timezone.now(), alert_80_sent_at=None, alert_100_sent_at=None
        )
        self.message_user(request, f"Reset {count} budget(s).")


@admin.register(BudgetReservation)
class BudgetReservationAdmin(admin.ModelAdmin):
    list_display = ("request_id", "user", "state", "tokens", "cost", "created_at", "expires_at")
    list_filter = ("state",)
    search_fields = ("request_id", "user__username")
    readonly_fields = [f.name for f in BudgetReservation._meta.fields]
