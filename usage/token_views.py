"""The usage page's API tokens: create one (its secret shown once) and revoke one. Session and
CSRF, like every page form; a stranger's token is 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accounts import tokens
from chatlima.errors import ClientError


@login_required
@require_POST
def create_token(request: HttpRequest) -> HttpResponse:
    try:
        name = tokens.clean_name(request.POST.get("name", ""))
    except ClientError as err:
        messages.error(request, err.message)
        return redirect("usage:dashboard")
    named, secret = tokens.issue_token(request.user, name)
    # Shown once, on the next page: only its digest is stored.
    request.session["new_api_token"] = {"id": named.pk, "label": named.label, "secret": secret}
    return redirect("usage:dashboard")


@login_required
@require_POST
def revoke_token(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = tokens.owned_token(request.user, token_id)
    except ClientError:
        raise Http404("No such API token.") from None
    tokens.revoke(token)
    messages.success(request, f"The API token '{token.label}' is revoked.")
    return redirect("usage:dashboard")
