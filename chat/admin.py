from datetime import UTC

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from chat.attachments import admin as attachments_admin  # noqa: F401 - registers the attachments' admin
from chat.catalogue import refresh_models
from chat.models import Conversation, Message, SyncClock
from chat.repricing import period_of, reprice
from chatlima.formats import money_display
from usage.models import CatalogueEntry, ModelPrice, ProviderPrice
from usage.pricing import prices_on

TOKEN_FIGURES = ("prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens", "cached_tokens", "cost", "actual_cost")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("public_id", "title", "owner", "model", "message_count", "total_tokens", "estimated_cost", "updated_at")
    list_filter = ("model", "is_active", ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner",)
    search_fields = ("public_id", "title", "owner__username")
    date_hierarchy = "created_at"
    readonly_fields = (
        "input_tokens", "output_tokens", "total_tokens", "reasoning_tokens", "cached_tokens",
        "estimated_cost", "actual_cost", "message_count", "last_message_preview", "last_message_at",
        "last_model", "version",
    )
    raw_id_fields = ("owner",)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("public_id", "role", "owner", "model", "status", "prompt_tokens", "completion_tokens", "cost", "timestamp")
    list_filter = ("role", "status", "model", "figures_source", ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner",)
    search_fields = ("public_id", "owner__username", "conversation__public_id")
    date_hierarchy = "timestamp"
    readonly_fields = TOKEN_FIGURES + ("figures_source", "completion_id", "elapsed_ms", "version")
    raw_id_fields = ("owner", "conversation", "user_message")


@admin.register(SyncClock)
class SyncClockAdmin(admin.ModelAdmin):
    list_display = ("user", "version")
    readonly_fields = ("version",)


# --- the model catalogue and its prices ---------------------------------------------------------
# Their admin lives here, beside the exchanges, because its actions need chat's side: refreshing
# asks the providers (chat.catalogue), repricing rewrites message costs and conversation totals
# (chat.repricing). The tables themselves are usage's.


class ProviderPriceInline(admin.TabularInline):
    model = ProviderPrice
    extra = 0
    can_delete = False
    fields = ("effective_date", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
              "cache_write_per_mtok", "reasoning_per_mtok", "currency")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False  # learnt from the provider's catalogue by refresh_models


@admin.register(ProviderPrice)
class ProviderPriceAdmin(admin.ModelAdmin):
    """Providers' own list prices, as refresh_models learnt them: read only (an override is a price above)."""

    list_display = ("entry", "effective_date", "input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                    "cache_write_per_mtok", "reasoning_per_mtok")
    list_filter = ("entry__provider",)
    search_fields = ("entry__model_id",)
    list_select_related = ("entry",)
    date_hierarchy = "effective_date"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ProviderPrice._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(CatalogueEntry)
class CatalogueEntryAdmin(admin.ModelAdmin):
    """The catalogue grouped by provider (filter and order), searchable by id and name."""

    list_display = ("display_name", "model_id", "provider", "listed", "context_window", "price_in_force",
                    "last_seen_at")
    list_filter = ("provider", "listed")
    search_fields = ("model_id", "display_name")
    ordering = ("provider", "display_name")
    list_per_page = 200
    readonly_fields = ("provider", "model_id", "listed", "first_seen_at", "last_seen_at")
    inlines = [ProviderPriceInline]
    actions = ["refresh_from_providers"]

    def has_add_permission(self, request):
        return False  # the providers' catalogues fill it (an administrator's price adds a model by hand)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            # One pass for the page: the price of every listed entry in two queries.
            entries = list(changelist.result_list)
            prices = prices_on([(e.provider, e.model_id) for e in entries], timezone.now().astimezone(UTC).date())
            for entry in entries:
                entry.price_today = prices[(entry.provider, entry.model_id)]
        return response

    @admin.display(description="price today (per 1M in / out)")
    def price_in_force(self, entry: CatalogueEntry) -> str:
        price = getattr(entry, "price_today", None)
        if price is None:
            return "price unknown"
        return f"{money_display(price.input_per_mtok)} / {money_display(price.output_per_mtok)} ({price.source})"

    @admin.action(description="Refresh these providers' catalogues now")
    def refresh_from_providers(self, request: HttpRequest, queryset) -> None:
        done = refresh_models(sorted(set(queryset.values_list("provider", flat=True))))
        for recorded in done.recorded:
            self.message_user(request, f"{recorded.provider}: {recorded.listed} listed, {recorded.added} new, "
                                       f"{recorded.vanished} gone, {recorded.prices_changed} prices changed.")
        for name, reason in done.failed.items():
            self.message_user(request, f"{name}: failed ({reason}); its catalogue is unchanged.", messages.ERROR)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Administrator's prices: overrides of every other source, from their effective dates."""

    list_display = ("model_id", "provider", "display_name", "input_per_mtok", "output_per_mtok",
                    "cached_input_per_mtok", "effective_date", "is_active")
    list_filter = ("provider", "is_active")
    search_fields = ("model_id", "display_name")
    actions = ["reprice_their_days"]

    @admin.action(description="Reprice the days these prices cover")
    def reprice_their_days(self, request: HttpRequest, queryset):
        """A confirmation page first (what would change, from a dry run); the repricing on confirm."""
        periods = [(price, *period_of(price)) for price in queryset.order_by("model_id", "effective_date")]
        confirmed = request.POST.get("confirm") == "yes"
        logs = [reprice(start, end, model=price.model_id, requested_by=request.user, dry_run=not confirmed)
                for price, start, end in periods]
        if confirmed:
            for log in logs:
                self.message_user(request, f"Repriced {log.model_name} {log.start}..{log.end}: {log.rows_changed} "
                                           f"rows, {money_display(log.cost_before)} -> {money_display(log.cost_after)} USD.")
            return None
        return TemplateResponse(request, "admin/usage/reprice_confirm.html", {
            **self.admin_site.each_context(request), "title": "Reprice these days?", "opts": self.model._meta,
            "previews": logs, "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action": "reprice_their_days",
        })
