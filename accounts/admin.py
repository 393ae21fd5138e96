from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import ApiToken, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = BaseUserAdmin.fieldsets + (("ChatLima", {"fields": ("timezone",)}),)
    list_display = ("username", "email", "timezone", "is_staff", "date_joined")


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("label", "user", "token_key", "created_at", "revoked_at", "token_limit", "cost_limit")
    list_filter = ("revoked_at",)
    search_fields = ("name", "token_key", "user__username")
    readonly_fields = ("token_key", "auth_token", "created_at", "revoked_at")
    raw_id_fields = ("user",)
