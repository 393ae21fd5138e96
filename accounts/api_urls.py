from django.urls import path

from accounts import token_views, views

urlpatterns = [
    path("auth/register", views.api_register, name="api-register"),
    path("auth/token", views.api_token, name="api-token"),
    path("auth/revoke", views.api_revoke_token, name="api-revoke"),
    path("auth/tokens", token_views.token_list, name="api-tokens"),
    path("auth/tokens/<str:token_id>", token_views.token_detail, name="api-token-detail"),
    path("me", views.api_me, name="api-me"),
]
