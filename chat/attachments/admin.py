"""The attachments in the admin (registered by chat/admin.py's import of this module)."""

from django.contrib import admin

from chat.attachments.models import Attachment


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("public_id", "kind", "name", "owner", "conversation", "bytes", "tokens", "created_at", "fetched_at")
    list_filter = ("kind", "format", ("owner", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("owner", "conversation")
    search_fields = ("public_id", "name", "url", "owner__username", "conversation__public_id")
    date_hierarchy = "created_at"
    readonly_fields = ("bytes", "format", "tokens", "tokens_model", "created_at", "fetched_at")
    raw_id_fields = ("owner", "conversation")
