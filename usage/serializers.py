"""Response shapes of the usage API, for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers


class PricingSerializer(serializers.Serializer):
    currency = serializers.CharField()
    input_per_mtok = serializers.CharField(help_text="USD per million tokens, a decimal string.")
    output_per_mtok = serializers.CharField()
    cached_input_per_mtok = serializers.CharField(allow_null=True)
    reasoning_per_mtok = serializers.CharField(help_text="What reasoning tokens cost: the output price unless set apart.")
    cache_write_per_mtok = serializers.CharField(allow_null=True)
    effective_date = serializers.DateField(allow_null=True, help_text="From when this price applies, where known.")
    source = serializers.ChoiceField(["admin", "provider", "genai-prices", "free"],
                                     help_text="Where the price comes from (API.md, Models).")


class ModelSerializer(serializers.Serializer):
    id = serializers.CharField()
    provider = serializers.CharField()
    display_name = serializers.CharField()
    available = serializers.BooleanField(
        help_text="False when the provider's key is not configured, or its catalogue no longer lists the model.")
    context_window = serializers.IntegerField(help_text="Tokens; 0 where the provider does not say.")
    pricing = PricingSerializer(allow_null=True, help_text="Null when no source prices the model: its costs are null.")


class ProviderGroupSerializer(serializers.Serializer):
    id = serializers.CharField()
    display_name = serializers.CharField()
    available = serializers.BooleanField()
    models = serializers.IntegerField(help_text="How many of the listed models are this provider's.")


class ModelListSerializer(serializers.Serializer):
    models = ModelSerializer(many=True, help_text="Grouped by provider (in the order of `providers`), by name within.")
    default = serializers.CharField()
    providers = ProviderGroupSerializer(many=True)


class ModelStatsSerializer(serializers.Serializer):
    provider = serializers.CharField()
    model_name = serializers.CharField()
    total_requests = serializers.IntegerField()
    error_count = serializers.IntegerField()
    total_prompt_tokens = serializers.IntegerField()
    total_completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_cost = serializers.CharField()
    avg_tokens_per_request = serializers.FloatField()


class GroupStatsSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    errors = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    cost = serializers.CharField()


class TokenStatsSerializer(GroupStatsSerializer):
    api_token_id = serializers.IntegerField(allow_null=True, help_text="Null: a browser session.")
    label = serializers.CharField()


class DoorStatsSerializer(GroupStatsSerializer):
    door = serializers.CharField(allow_null=True, help_text="websocket, sse, send or openai.")


class StatsSerializer(serializers.Serializer):
    stats = ModelStatsSerializer(many=True)
    by_token = TokenStatsSerializer(many=True)
    by_door = DoorStatsSerializer(many=True)


class UsageRowSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    request_id = serializers.CharField()
    conversation_id = serializers.CharField(allow_null=True)
    message_id = serializers.CharField(allow_null=True)
    provider = serializers.CharField()
    model_name = serializers.CharField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    cost_estimate = serializers.CharField(allow_null=True)
    actual_cost = serializers.CharField(allow_null=True)
    response_time_ms = serializers.IntegerField(allow_null=True)
    time_to_first_token_ms = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    usage_source = serializers.CharField()
    error_message = serializers.CharField(allow_blank=True)
    metadata = serializers.JSONField()
    created_at = serializers.DateTimeField()
    api_token_id = serializers.IntegerField(allow_null=True)
    api_token = serializers.CharField(allow_null=True, help_text="The token's name (or its first characters).")
    door = serializers.CharField(allow_null=True)


class HistorySerializer(serializers.Serializer):
    history = UsageRowSerializer(many=True)
    count = serializers.IntegerField()


class DaySerializer(GroupStatsSerializer):
    """One day and model of the daily rollups: the same figures as a group of usage rows."""

    date = serializers.DateField(help_text="The user's local day.")
    provider = serializers.CharField()
    model_name = serializers.CharField()


class DailySerializer(serializers.Serializer):
    days = DaySerializer(many=True)
