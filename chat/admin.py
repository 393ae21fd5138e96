from django.contrib import admin

from chat.models import Conversation, Message, SyncClock

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
