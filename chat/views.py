"""The chat pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chat.models import Conversation


@login_required
def home(request: HttpRequest) -> HttpResponse:
    conversations = Conversation.objects.for_user(request.user).order_by("-updated_at")[:50]
    return render(request, "chat/home.html", {"conversations": conversations})
