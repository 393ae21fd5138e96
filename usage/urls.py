from django.urls import path

from usage import token_views, views

app_name = "usage"

urlpatterns = [
    path("usage/", views.dashboard, name="dashboard"),
    path("usage/tokens/new", token_views.create_token, name="create-api-token"),
    path("usage/tokens/<int:token_id>/revoke", token_views.revoke_token, name="revoke-api-token"),
    path("usage/alerts/<int:alert_id>/dismiss", views.dismiss_alert, name="dismiss-budget-alert"),
]
