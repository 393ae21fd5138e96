from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin

pytestmark = pytest.mark.django_db

OUR_APPS = ("accounts", "chat", "usage")


def test_every_model_of_ours_is_in_the_admin():
    missing = [
        m.__name__ for app in OUR_APPS for m in apps.get_app_config(app).get_models() if m not in admin.site._registry
    ]
    assert missing == []


def test_every_admin_list_page_renders_for_staff(client, django_user_model):
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", "a-long-passphrase")
    client.force_login(superuser)
    for app in OUR_APPS:
        for model in apps.get_app_config(app).get_models():
            url = f"/admin/{app}/{model._meta.model_name}/"
            assert client.get(url).status_code == 200, url


def test_admin_is_closed_to_non_staff(client, owner):
    client.force_login(owner)
    response = client.get("/admin/chat/conversation/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
