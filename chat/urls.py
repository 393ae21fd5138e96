from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<str:public_id>/", views.conversation, name="conversation"),
    path("draft-estimate/", views.draft_estimate, name="draft_estimate"),
]
