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


@admin.register(BudgetReservation)
class BudgetReservationAdmin(admin.ModelAdmin):
    list_display = ("request_id", "user", "state", "tokens", "cost", "created_at", "expires_at")
    list_filter = ("state",)
    search_fields = ("request_id", "user__username")
    readonly_fields = [f.name for f in BudgetReservation._meta.fields]
