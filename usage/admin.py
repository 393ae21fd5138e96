from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from usage import by_token
from usage.admin_reports import ReportForm, build_report, report_csv
from usage.models import (
    ApiUsageLog,
    Budget,
    BudgetAlert,
    BudgetReservation,
    DailyModelRollup,
    DailyUsageRollup,
    Repricing,
)


@admin.register(ApiUsageLog)
class ApiUsageLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "provider", "model_name", "status", "prompt_tokens", "completion_tokens", "total_tokens", "cost_estimate", "usage_source")
    list_filter = ("status", "provider", "model_name", "usage_source", ("user", admin.RelatedOnlyFieldListFilter))
    search_fields = ("request_id", "user__username", "model_name")
    list_select_related = ("user",)
    show_full_result_count = False  # no second COUNT(*) over millions of rows
    date_hierarchy = "created_at"
    raw_id_fields = ("user", "conversation", "message")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ApiUsageLog._meta.fields]

    def has_add_permission(self, request):
        return False  # one row per provider call, written by the exchange pipeline only


@admin.register(DailyUsageRollup)
class DailyUsageRollupAdmin(admin.ModelAdmin):
    list_display = ("day", "user", "provider", "model_name", "requests", "errors", "cancelled", "total_tokens", "cost", "computed_at")
    list_filter = ("provider", "model_name")
    search_fields = ("user__username", "model_name")
    date_hierarchy = "day"
    list_select_related = ("user",)
    change_list_template = "admin/usage/dailyusagerollup/change_list.html"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in DailyUsageRollup._meta.fields]

    def has_add_permission(self, request):
        return False  # rollups are computed from the usage rows, never typed in

    def get_urls(self):
        report = self.admin_site.admin_view(self.report_view)
        return [path("report/", report, name="usage_report"), *super().get_urls()]

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """Usage over a date range from the rollups (staff only, via admin_view), as a page or CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ReportForm(request.GET or ReportForm.default_range())
        report = build_report(**form.cleaned_data) if form.is_valid() else None
        if report is not None and request.GET.get("format") == "csv":
            response = HttpResponse(report_csv(report), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="usage-{report.start}-{report.end}.csv"'
            return response
        context = {
            **self.admin_site.each_context(request),
            "title": "Usage report",
            "opts": self.model._meta,
            "form": form,
            "report": report,
            "csv_query": urlencode({**request.GET.dict(), "format": "csv"}) if report else "",
        }
        if report is not None:
            context["by_token"] = by_token.admin_by_token(by_token.rows_between(report.start, report.end))
        return TemplateResponse(request, "admin/usage/report.html", context)


@admin.register(Repricing)
class RepricingAdmin(admin.ModelAdmin):
    """The log of deliberate repricings (chat/repricing.py): read only."""

    list_display = ("created_at", "requested_by", "start", "end", "provider", "model_name", "rows_examined",
                    "rows_changed", "cost_before", "cost_after")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Repricing._meta.fields]

    def has_add_permission(self, request):
        return False  # written by a repricing (the command, or the prices' admin action)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "threshold", "period_start", "tokens_used", "token_limit", "cost_used", "cost_limit", "emailed_at", "dismissed_at")
    list_filter = ("threshold",)
    search_fields = ("user__username", "message")
    date_hierarchy = "created_at"
    raw_id_fields = ("user",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in BudgetAlert._meta.fields if f.name != "dismissed_at"]


@admin.register(DailyModelRollup)
class DailyModelRollupAdmin(admin.ModelAdmin):
    list_display = ("day", "provider", "model_name", "users", "requests", "errors", "cancelled", "total_tokens", "cost", "computed_at")
    list_filter = ("provider", "model_name")
    date_hierarchy = "day"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in DailyModelRollup._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("user", "period", "token_limit", "tokens_used", "tokens_held", "cost_limit", "cost_used", "period_start")
    list_filter = ("period",)
    search_fields = ("user__username",)
    readonly_fields = ("tokens_used", "tokens_held", "cost_used", "cost_held", "updated_at")
    actions = ["reset_budget_period"]

    @admin.action(description="Reset the current period's usage (and re-arm its alerts)")
    def reset_budget_period(self, request, queryset):
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
