"""Request and response shapes of the conversations and sync API.

The sync shapes document the mobile client's format for the OpenAPI schema;
the push body itself is validated by `chat.sync.parse_push`, which reports
every bad item keyed by its path.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers

from chat.ids import is_valid_id


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


class ConversationSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField(allow_blank=True)
    model = serializers.CharField(allow_blank=True)
    system_prompt = serializers.CharField(allow_blank=True)
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


class ConversationWriteSerializer(serializers.Serializer):
    """PATCH body: every field optional."""

    title = serializers.CharField(max_length=255, required=False, allow_blank=True)
    model = serializers.CharField(max_length=128, required=False, allow_blank=True)
    system_prompt = serializers.CharField(max_length=32_000, required=False, allow_blank=True)


class ConversationCreateSerializer(ConversationWriteSerializer):
    id = serializers.CharField(max_length=64, required=False)

    def validate_id(self, value: str) -> str:
        if not is_valid_id(value):
            raise serializers.ValidationError("Ids are 1 to 64 letters, digits, '_' or '-'.")
        return value


# --- sync (the mobile client's camelCase names are kept on the wire)


class SyncMessageSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)
    role = serializers.ChoiceField(choices=["user", "assistant", "system"])
    content = serializers.CharField(allow_blank=True)
    timestamp = serializers.DateTimeField(required=False)
    originalModel = serializers.CharField(required=False, allow_blank=True, help_text="User messages: the model chosen.")  # noqa: N815
    model = serializers.CharField(required=False, allow_blank=True)
    contentType = serializers.CharField(required=False)  # noqa: N815
    prompt_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    completion_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    total_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    reasoning_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    cached_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    user_message_id = serializers.CharField(required=False, allow_null=True, help_text="Assistant messages: the question's id.")
    completion_id = serializers.CharField(required=False, allow_blank=True)
    elapsed_time = serializers.IntegerField(required=False, allow_null=True, min_value=0)


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
    user_message_id = serializers.CharField(required=False, allow_null=True)
    completion_id = serializers.CharField(required=False, allow_blank=True)
    elapsed_time = serializers.IntegerField(required=False, allow_null=True)
    cost = serializers.CharField(required=False, allow_null=True)


class SyncConversationSerializer(serializers.Serializer):
    id = serializers.CharField(max_length=64)
    title = serializers.CharField(required=False, allow_blank=True, max_length=255)
    createdAt = serializers.DateTimeField(required=False)  # noqa: N815
    updatedAt = serializers.DateTimeField(required=False, help_text="Conflicts: the later one wins.")  # noqa: N815
    isActive = serializers.BooleanField(required=False)  # noqa: N815
    model = serializers.CharField(required=False, allow_blank=True)
    systemPrompt = serializers.CharField(required=False, allow_blank=True)  # noqa: N815
    messages = SyncMessageSerializer(many=True, required=False)
    userId = serializers.CharField(required=False, help_text="Ignored: derived by the server.")  # noqa: N815
    messageCount = serializers.IntegerField(required=False, help_text="Ignored: derived by the server.")  # noqa: N815
    totalTokens = serializers.IntegerField(required=False, help_text="Ignored: derived by the server.")  # noqa: N815
    lastMessagePreview = serializers.CharField(required=False, allow_blank=True, help_text="Ignored.")  # noqa: N815
    lastMessageTimestamp = serializers.CharField(required=False, help_text="Ignored.")  # noqa: N815
    lastModel = serializers.CharField(required=False, allow_blank=True, help_text="Ignored.")  # noqa: N815


class SyncPushSerializer(serializers.Serializer):
    conversations = SyncConversationSerializer(many=True, required=False, help_text="At most 1,000 per push.")
    deleted = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    since = serializers.CharField(
        required=False,
        help_text="The client's last pull cursor. The answer's `cursor` moves past this push only when the client "
        "was up to date; otherwise it is `since` again, so the next pull misses nothing.",
    )


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
    userId = serializers.CharField()  # noqa: N815
    model = serializers.CharField(allow_blank=True)
    systemPrompt = serializers.CharField(allow_blank=True)  # noqa: N815
    messages = SyncPulledMessageSerializer(many=True)
    messageCount = serializers.IntegerField()  # noqa: N815
    totalTokens = serializers.IntegerField()  # noqa: N815
    totalInputTokens = serializers.IntegerField()  # noqa: N815
    totalOutputTokens = serializers.IntegerField()  # noqa: N815
    totalCost = serializers.CharField()  # noqa: N815
    lastMessagePreview = serializers.CharField(allow_blank=True)  # noqa: N815
    lastMessageTimestamp = serializers.DateTimeField(allow_null=True)  # noqa: N815
    lastModel = serializers.CharField(allow_blank=True)  # noqa: N815


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


ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": {}},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}
COMMON_ERRORS = {
    "400": "INVALID_MESSAGE: a bad field, parameter or body",
    "401": "UNAUTHENTICATED: no or bad credentials",
    "429": "RATE_LIMITED: our own throttle",
}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def add_error_responses(result, generator, request, public):
    """drf-spectacular hook: every operation may answer with the contract's error body.

    Any DRF view can refuse a body (400), credentials (401) or a burst (429), and a
    path naming an object can answer 404; views rarely list these themselves.
    """
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault("ErrorBody", ERROR_SCHEMA)
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for code, description in COMMON_ERRORS.items():
                responses.setdefault(code, {"content": ref, "description": description})
            if "{" in path:
                responses.setdefault("404", {"content": ref, "description": "Not found, or someone else's"})
    return result


SEND_BODY = {
    "type": "object",
    "properties": {
        "conversation_id": {"type": "string", "description": "Absent: a new conversation."},
        "message": {"type": "string", "maxLength": 32000},
        "model": {"type": "string"},
        "client_message_id": {"type": "string", "description": "Id for the user message; a known one replays the stored result."},
        "temperature": {"type": "number"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "system_prompt": {"type": "string", "description": "Only when creating the conversation."},
        "messages": {"type": "array", "items": {"type": "object"}, "description": "Seed-000 form: the last user entry's id becomes client_message_id."},
    },
    "required": ["message"],
}
USAGE_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "integer"} for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens")},
}
SEND_RESPONSE = {
    "type": "object",
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "response": {"type": "string"},
                "usage": USAGE_SCHEMA,
                "cost": {"type": "object", "properties": {
                    "estimated": {"type": "string", "nullable": True},
                    "actual": {"type": "string", "nullable": True},
                    "currency": {"type": "string"},
                }},
                "timestamp": {"type": "string", "format": "date-time"},
                "elapsed_time": {"type": "integer"},
                "contentType": {"type": "string"},
                "id": {"type": "string", "description": "The provider's completion id."},
                "request_id": {"type": "string", "description": "The user message's id."},
                "message_id": {"type": "string", "description": "The assistant message's id."},
                "conversation_id": {"type": "string"},
                "model": {"type": "string"},
            },
        },
        "timestamp": {"type": "string", "format": "date-time"},
    },
}
EXCHANGE_ERRORS = {
    "400": "INVALID_MESSAGE or MODEL_UNAVAILABLE",
    "401": "UNAUTHENTICATED",
    "403": "TOKEN_LIMIT_EXCEEDED (or a failed CSRF check for a session)",
    "404": "CONVERSATION_NOT_FOUND",
    "429": "RATE_LIMITED",
    "502": "PROVIDER_ERROR",
    "504": "TIMEOUT",
}


def _exchange_operation(operation_id: str, summary: str, ok: dict) -> dict:
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["chat"],
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendMessage"}}}},
            "responses": {"200": ok, **{code: {"description": text, "content": ref} for code, text in EXCHANGE_ERRORS.items()}},
        }
    }


def describe_exchange_doors(result, generator, request, public):
    """drf-spectacular hook: the exchange doors are plain async views the generator cannot see.

    Adds /api/v1/chat/send and /api/v1/chat/stream (API.md "Sending a message") unless a
    view already describes them. The WebSocket /ws/chat/ carries the same events.
    """
    paths = result.setdefault("paths", {})
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ERROR_SCHEMA)
    schemas.setdefault("SendMessage", SEND_BODY)
    schemas.setdefault("SendResult", SEND_RESPONSE)
    paths.setdefault("/api/v1/chat/send", _exchange_operation(
        "chat_send", "Send a message and wait for the whole answer.",
        {"description": "The answer with its usage and cost.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SendResult"}}}},
    ))
    paths.setdefault("/api/v1/chat/stream", _exchange_operation(
        "chat_stream", "Send a message and stream the answer as server-sent events.",
        {
            "description": "`event: <type>\\ndata: <json>\\n\\n` frames: message_saved, stream_start, stream_chunk, "
            "stream_end, then exactly one message_complete or error. Errors before the stream starts are plain JSON.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    ))
    return result
