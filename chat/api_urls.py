from __future__ import annotations

from django.urls import path

from chat import stream_views, token_usage

urlpatterns: list = [
    path("chat/stream", stream_views.chat_stream, name="chat-stream"),
    path("chat/send", stream_views.chat_send, name="chat-send"),
    path("token-usage", token_usage.token_usage, name="api-token-usage"),
]
