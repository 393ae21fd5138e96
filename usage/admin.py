from django.contrib import admin

from usage.models import ApiUsageLog, BudgetAlert, DailyUsageRollup, ModelPrice


@admin.register(ApiUsageLog)
class ApiUsageLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "provider", "model_name", "status", "prompt_tokens", "completion_tokens", "total_tokens", "cost_estimate", "usage_source")
    list_filter = ("status", "provider", "model_name", "usage_source")
    search_fields = ("request_id", "user__username", "model_name")
    date_hierarchy = "created_at"
    raw_id_fields = ("user", "conversation", "message")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ApiUsageLog._meta.fields]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ("model_id", "provider", "display_name", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "effective_date", "is_active")
    list_filter = ("provider", "is_active")
    search_fields = ("model_id", "display_name")


@admin.register(DailyUsageRollup)
class DailyUsageRollupAdmin(admin.ModelAdmin):
    list_display = ("day", "user", "provider", "model_name", "requests", "errors", "total_tokens", "cost")
    list_filter = ("provider", "model_name")
    search_fields = ("user__username", "model_name")
    date_hierarchy = "day"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in DailyUsageRollup._meta.fields]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "threshold", "period_start", "tokens_used", "token_limit", "cost_used", "cost_limit", "emailed_at", "dismissed_at")
    list_filter = ("threshold",)
    search_fields = ("user__username", "message")
    date_hierarchy = "created_at"
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in BudgetAlert._meta.fields if f.name != "dismissed_at"]
