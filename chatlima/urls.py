from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from chatlima import ops

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("api/v1/", include("accounts.api_urls")),
    path("api/v1/", include("chat.api_urls")),  # the exchange doors: chat/send, chat/stream, budget
    path("api/v1/", include("chat.rest_urls")),  # conversations and sync
    path("api/v1/", include("usage.api_urls")),  # models, token-usage, usage/*
    path("api/v1/", include("usage.budget_urls")),  # budget
    path("v1/", include("chat.openai_urls")),  # the OpenAI-compatible door
    path("health", ops.health, name="health"),
    path("api/v1/stats", ops.stats, name="ops-stats"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("", include("usage.urls")),
    path("", include("chat.urls")),
]
