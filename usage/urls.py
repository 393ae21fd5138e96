from django.urls import path

from usage import views

app_name = "usage"

urlpatterns = [
    path("usage/", views.dashboard, name="dashboard"),
]
