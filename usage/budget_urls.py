from __future__ import annotations

from django.urls import path

from usage import budget_views

urlpatterns: list = [
    path("budget", budget_views.budget, name="budget"),
]
