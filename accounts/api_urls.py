from django.urls import path

from accounts import views

urlpatterns = [
    path("auth/register", views.api_register, name="api-register"),
    path("auth/token", views.api_token, name="api-token"),
    path("auth/revoke", views.api_revoke_token, name="api-revoke"),
    path("me", views.api_me, name="api-me"),
]
