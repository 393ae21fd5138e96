"""The OpenAI-compatible door, mounted at /v1/ (chat/openai_door.py)."""

from __future__ import annotations

from django.urls import path

from chat import openai_door

urlpatterns: list = [
    path("chat/completions", openai_door.chat_completions, name="openai-chat-completions"),
    path("models", openai_door.models, name="openai-models"),
]
