"""Sign-up, login and logout pages, and the API's register and token endpoints."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.decorators import api_view, authentication_classes, permission_classes, throttle_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from accounts import login_throttle, tokens
from accounts.forms import LoginForm, SignupForm
from accounts.models import sign_up
from chatlima.errors import ClientError, error_body

BACKEND = "accounts.backends.LockoutModelBackend"


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and (user := sign_up(form)) is not None:
        login(request, user, backend=BACKEND)
        messages.success(request, "Welcome to ChatLima.")
        return redirect("chat:home")
    return render(request, "accounts/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    """Django's login page; a locked-out login answers 429 with how long it lasts (accounts.login_throttle)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    form_class = LoginForm

    def form_invalid(self, form: LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        if form.locked_out is not None:
            response.status_code = 429
            response["Retry-After"] = str(form.locked_out.retry_after)
        return response


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True,
                                 help_text="A name for this token ('my laptop', 'the IDE').")


TokenSerializer = inline_serializer("Token", {
    "token": serializers.CharField(), "expiry": serializers.DateTimeField(), "id": serializers.IntegerField(),
    "name": serializers.CharField(),
})


def _issue_token(user, request: Request, name: str = "") -> dict:
    named, token = tokens.issue_token(user, tokens.clean_name(name))
    return {"token": token, "expiry": named.auth_token.expiry, "id": named.pk, "name": named.name}


class RegisterSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)

    def validate(self, attrs):
        form = SignupForm({"username": attrs["username"], "password1": attrs["password"], "password2": attrs["password"]})
        if not form.is_valid():
            raise serializers.ValidationError(_form_errors(form))
        attrs["form"] = form
        return attrs


def _form_errors(form) -> dict[str, list[str]]:
    return {k: [str(e) for e in v] for k, v in form.errors.items()}


@extend_schema(request=RegisterSerializer, responses={201: TokenSerializer})
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([ScopedRateThrottle])
def api_register(request: Request) -> Response:
    serializer = RegisterSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    form = serializer.validated_data["form"]
    user = sign_up(form)
    if user is None:
        raise serializers.ValidationError(_form_errors(form))
    return Response(_issue_token(user, request), status=status.HTTP_201_CREATED)


api_register.cls.throttle_scope = "login"


@extend_schema(request=CredentialsSerializer, responses={200: TokenSerializer})
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([ScopedRateThrottle])
def api_token(request: Request) -> Response:
    serializer = CredentialsSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    credentials = serializer.validated_data
    user = authenticate(request._request, username=credentials["username"], password=credentials["password"])
    if user is None:
        locked = login_throttle.lockout_of(request._request)
        if locked is not None:
            return Response(error_body("RATE_LIMITED", locked.message, locked.details()),
                            status=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(locked.retry_after)})
        raise ClientError("INVALID_MESSAGE", "Wrong username or password.")
    return Response(_issue_token(user, request, credentials.get("name", "")))


api_token.cls.throttle_scope = "login"


@extend_schema(
    responses=inline_serializer("Me", {"username": serializers.CharField(), "timezone": serializers.CharField()})
)
@api_view(["GET"])
def api_me(request: Request) -> Response:
    return Response({"username": request.user.username, "timezone": request.user.timezone})


@extend_schema(request=None, responses={204: None})
@api_view(["POST"])
def api_revoke_token(request: Request) -> Response:
    """Revoke the token this request was made with (sign this device out)."""
    if isinstance(request.auth, AuthToken):
        tokens.revoke(tokens.named_token(request.auth))
    return Response(status=status.HTTP_204_NO_CONTENT)
