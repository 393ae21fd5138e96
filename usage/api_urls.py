from django.urls import path

from usage import api_views

urlpatterns = [
    path("models", api_views.models_list, name="api-models"),
    path("usage/stats", api_views.usage_stats, name="api-usage-stats"),
    path("usage/history", api_views.usage_history, name="api-usage-history"),
    path("usage/daily", api_views.usage_daily, name="api-usage-daily"),
    path("usage/export.csv", api_views.usage_export, name="api-usage-export"),
]
