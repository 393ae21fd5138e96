"""Request and response shapes of the conversations and sync API.

The sync push body is not here: chat.sync.schema's pydantic models validate and describe it.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from chat.attachments.payload import AttachmentSerializer
from chat.ids import ID_RULE, ID_SCHEMA_PATTERN, is_valid_id
from chat.models import MAX_TOKENS_LIMIT, TEMPERATURE_MAX
from chat.openapi import add_error_responses, describe_exchange_doors  # noqa: F401 - the hooks settings name
from chat.sync.schema import DERIVED


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ConversationUsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=16, decimal_places=8, coerce_to_string=True)
    message_count = serializers.IntegerField()


class MessageSerializer(serializers.Serializer):
    """A stored message object (API.md "Stored message objects carry")."""

    id = serializers.CharField()
    role = serializers.ChoiceField(choices=["user", "assistant", "system"])
    content = serializers.CharField(allow_blank=True)
    timestamp = serializers.DateTimeField()
    model = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    contentType = serializers.CharField()  # noqa: N815 - the contract's name
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    total_tokens = serializers.IntegerField(allow_null=True)
    reasoning_tokens = serializers.IntegerField(allow_null=True)
    cached_tokens = serializers.IntegerField(allow_null=True)
    user_message_id = serializers.CharField(allow_null=True)
    completion_id = serializers.CharField(allow_blank=True)
    elapsed_time = serializers.IntegerField(allow_null=True)
    cost = serializers.DecimalField(max_digits=16, decimal_places=8, allow_null=True, coerce_to_string=True)
    figures_source = serializers.CharField(allow_blank=True)
    superseded = serializers.BooleanField(help_text="A regeneration or an edit took it out of the live thread.")
    replaces = serializers.CharField(allow_null=True, help_text="The id of the message this one is a new version of.")


class ConversationSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    model = serializers.CharField(allow_blank=True)
    system_prompt = serializers.CharField(allow_blank=True)
    temperature = serializers.FloatField(allow_null=True, help_text="Null: the provider's default.")
    max_tokens = serializers.IntegerField(allow_null=True, help_text="Null: CHATLIMA_DEFAULT_MAX_TOKENS.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_message_at = serializers.DateTimeField(allow_null=True)
    last_message_preview = serializers.CharField(allow_blank=True)
    conversation_usage = ConversationUsageSerializer()


class ConversationDetailSerializer(ConversationSerializer):
    messages = MessageSerializer(many=True)


class ConversationPageSerializer(serializers.Serializer):
    results = ConversationSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True)
    next = serializers.URLField(allow_null=True)


class TextField(serializers.CharField):
    """Text exactly as the schema describes it: a JSON string (DRF's CharField would also take 5
    and make it "5"), kept as sent (not trimmed, so maxLength counts what the client sent), and
    never a NUL or a lone surrogate (DRF's own validators, said in the schema by add_error_responses)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "pattern": ID_SCHEMA_PATTERN, "maxLength": 64})
class PublicIdField(TextField):
    """A client-chosen id, matched as a whole string (chat.ids)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=64, **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not is_valid_id(value):
            raise serializers.ValidationError(ID_RULE)
        return value


class StrictFloatField(serializers.FloatField):
    """A JSON number and nothing else: DRF's FloatField would also take "0.5" and true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer and nothing else: DRF's IntegerField would also take "5" and 5.0."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConversationWriteSerializer(serializers.Serializer):
    """PATCH body: every field optional; a null `temperature` or `max_tokens` clears it."""

    title = TextField(max_length=255, required=False, allow_blank=True)
    model = TextField(max_length=128, required=False, allow_blank=True)
    system_prompt = TextField(max_length=32_000, required=False, allow_blank=True)
    temperature = StrictFloatField(min_value=0, max_value=TEMPERATURE_MAX, required=False, allow_null=True,
                                   help_text="0 to 2; null: the provider's default.")
    max_tokens = StrictIntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False, allow_null=True,
                                    help_text="The answer's allowance; null: CHATLIMA_DEFAULT_MAX_TOKENS.")


class ConversationCreateSerializer(ConversationWriteSerializer):
    """POST body: every field optional; `id` is the client's own id for the conversation."""

    id = PublicIdField(required=False)


# --- sync answers (the mobile client's camelCase names are kept on the wire; the push body is
# chat.sync.schema's)
class SyncPulledMessageSerializer(serializers.Serializer):
    id = serializers.CharField()
    role = serializers.CharField()
    content = serializers.CharField(allow_blank=True)
    timestamp = serializers.DateTimeField()
    contentType = serializers.CharField()  # noqa: N815
    status = serializers.CharField()
    originalModel = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
    model = serializers.CharField(required=False, allow_blank=True)
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    total_tokens = serializers.IntegerField(allow_null=True)
    reasoning_tokens = serializers.IntegerField(allow_null=True)
    cached_tokens = serializers.IntegerField(allow_null=True)
    figures_source = serializers.CharField(allow_blank=True)
    superseded = serializers.BooleanField(help_text="A regeneration or an edit took it out of the live thread.")
    replaces = serializers.CharField(allow_null=True, help_text="The id of the message this one is a new version of.")
    user_message_id = serializers.CharField(required=False, allow_null=True)
    completion_id = serializers.CharField(required=False, allow_blank=True)
    elapsed_time = serializers.IntegerField(required=False, allow_null=True)
    cost = serializers.CharField(required=False, allow_null=True)


class SyncMessageCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class SyncPushResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=["created", "updated", "unchanged"])
    messages = SyncMessageCountsSerializer()
    deleted = serializers.BooleanField(required=False, help_text="Present when a tombstone won over the push.")


class SyncDeletedResultSerializer(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.ChoiceField(choices=["deleted", "unchanged"])


class SyncPushResponseSerializer(serializers.Serializer):
    conversations = SyncPushResultSerializer(many=True)
    deleted = SyncDeletedResultSerializer(many=True)
    cursor = serializers.CharField()
    server_time = serializers.DateTimeField()


class SyncPulledConversationSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    createdAt = serializers.DateTimeField()  # noqa: N815
    updatedAt = serializers.DateTimeField()  # noqa: N815
    isActive = serializers.BooleanField()  # noqa: N815
    userId = serializers.JSONField(required=False, help_text=DERIVED)  # noqa: N815
    model = serializers.CharField(allow_blank=True)
    systemPrompt = serializers.CharField(allow_blank=True)  # noqa: N815
    messages = SyncPulledMessageSerializer(many=True)
    messageCount = serializers.JSONField(required=False, help_text=DERIVED)  # noqa: N815
    totalTokens = serializers.JSONField(required=False, help_text=DERIVED)  # noqa: N815
    totalInputTokens = serializers.IntegerField()  # noqa: N815
    totalOutputTokens = serializers.IntegerField()  # noqa: N815
    totalCost = serializers.CharField()  # noqa: N815
    lastMessagePreview = serializers.JSONField(required=False, help_text=DERIVED)  # noqa: N815
    lastMessageTimestamp = serializers.JSONField(required=False, help_text=DERIVED)  # noqa: N815
    lastModel = serializers.JSONField(required=False, help_text=DERIVED)  # noqa: N815
    attachments = AttachmentSerializer(many=True, required=False, help_text="Only with `?attachments=1`.")


class SyncPullResponseSerializer(serializers.Serializer):
    conversations = SyncPulledConversationSerializer(many=True)
    deleted = serializers.ListField(child=serializers.CharField())
    cursor = serializers.CharField()
    has_more = serializers.BooleanField()


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Tells the schema (and Swagger's Authorize button) how API clients authenticate."""

    target_class = "accounts.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <token>` from /api/v1/auth/token"}
