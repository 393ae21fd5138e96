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

from accounts import login_throttle
from accounts.forms import SignupForm
from accounts.models import Budget
from chatlima.errors import ClientError


def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        Budget.objects.for_user(user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to ChatLima.")
        return redirect("chat:home")
    return render(request, "accounts/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        ip = request.META.get("REMOTE_ADDR")
        if login_throttle.is_locked(username, ip):
            form = self.get_form()
            form.add_error(None, "Too many failed attempts. Wait a few minutes and try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            login_throttle.clear(username, ip)
        else:
            login_throttle.record_failure(username, ip)
        return response


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


TokenSerializer = inline_serializer("Token", {"token": serializers.CharField(), "expiry": serializers.DateTimeField()})


def _issue_token(user, request: Request) -> dict:
    instance, token = AuthToken.objects.create(user)
    return {"token": token, "expiry": instance.expiry}


class RegisterSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)

    def validate(self, attrs):
        form = SignupForm({"username": attrs["username"], "password1": attrs["password"], "password2": attrs["password"]})
        if not form.is_valid():
            raise serializers.ValidationError({k: [str(e) for e in v] for k, v in form.errors.items()})
        attrs["form"] = form
        return attrs


@extend_schema(request=RegisterSerializer, responses={201: TokenSerializer})
@api_view(["POST"])
@authentication_classes([])
@permission_classes([AllowAny])
@throttle_classes([ScopedRateThrottle])
def api_register(request: Request) -> Response:
    serializer = RegisterSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    user = serializer.validated_data["form"].save()
    Budget.objects.for_user(user)
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
    username = serializer.validated_data["username"]
    ip = request.META.get("REMOTE_ADDR")
    if login_throttle.is_locked(username, ip):
        raise ClientError("RATE_LIMITED", "Too many failed attempts. Wait a few minutes and try again.")
    user = authenticate(request._request, username=username, password=serializer.validated_data["password"])
    if user is None:
        login_throttle.record_failure(username, ip)
        raise ClientError("INVALID_MESSAGE", "Wrong username or password.")
    login_throttle.clear(username, ip)
    return Response(_issue_token(user, request))


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
        request.auth.delete()
    return Response(status=status.HTTP_204_NO_CONTENT)
