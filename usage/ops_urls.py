from django.urls import path

from usage import ops_views

urlpatterns = [
    path("health", ops_views.health, name="health"),
    path("api/v1/stats", ops_views.stats, name="ops-stats"),
    path("usage/alerts/<int:alert_id>/dismiss", ops_views.dismiss_alert, name="dismiss-budget-alert"),
]
