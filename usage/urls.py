from django.urls import path

from usage import views

app_name = "usage"

urlpatterns = [
    path("usage/", views.dashboard, name="dashboard"),
    path("usage/alerts/<int:alert_id>/dismiss", views.dismiss_alert, name="dismiss-budget-alert"),
]
