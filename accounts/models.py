"""Users: identity, the one spelling of a username, sign-up. Their budgets live in usage.models."""

from __future__ import annotations

import unicodedata
import zoneinfo

from django.conf import settings
from django.contrib.auth import models as auth_models
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone.")


def default_timezone() -> str:
    return settings.CHATLIMA_DEFAULT_TIMEZONE


def canonical_username(username: str) -> str:
    """The one spelling of a username that logins, sign-up and lockouts compare.

    NFKC, surrounding whitespace stripped, case-folded: 'Victim ', ' victim', 'victim\t' and 'VICTIM'
    are all the account 'victim'. Identity (`UserManager.get_by_natural_key`) and the lockout counts
    (accounts.login_throttle) use this same function, so no spelling that reaches an account can
    count its failures anywhere else.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).strip().casefold())
    return folded.strip()


class UserQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for user in objs:
            user.username_key = canonical_username(user.username)
        return super().bulk_create(objs, *args, **kwargs)


class UserManager(auth_models.UserManager.from_queryset(UserQuerySet)):
    def get_by_natural_key(self, username):
        """The user whose canonical username matches (what ModelBackend, and so every login, looks up)."""
        if not isinstance(username, str):
            raise self.model.DoesNotExist
        return self.get(username_key=canonical_username(username))


class User(AbstractUser):
    # Days in reports, rollups and budget periods are this user's days.
    timezone = models.CharField(max_length=64, default=default_timezone, validators=[validate_timezone])
    # canonical_username(username): unique, so two sign-ups that differ only by case or whitespace
    # cannot both succeed, even at the same moment. The username itself is kept as the user typed it.
    username_key = models.TextField(unique=True, editable=False)

    objects = UserManager()

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @classmethod
    def normalize_username(cls, username):
        username = super().normalize_username(username)
        return username.strip() if isinstance(username, str) else username

    def save(self, *args, **kwargs) -> None:
        self.username_key = canonical_username(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key"}
        super().save(*args, **kwargs)

    def validate_unique(self, exclude=None) -> None:
        """Also refuse a username another account already has up to case and whitespace (every form asks this)."""
        super().validate_unique(exclude=exclude)
        if (exclude and "username" in exclude) or not isinstance(self.username, str):
            return
        taken = type(self)._default_manager.filter(username_key=canonical_username(self.username))
        if taken.exclude(pk=self.pk).exists():
            raise ValidationError({"username": [self.unique_error_message(type(self), ("username",))]})


def sign_up(form) -> User | None:
    """Save a valid sign-up form (accounts.forms.SignupForm) as a new user (the budget comes on first use).

    Transaction: one atomic block of its own; no lock. The form has already refused a taken username;
    a sign-up racing for the same canonical name meets the unique `username_key`, and then this adds
    the same "already exists" error to the form and returns None, never a 500.
    """
    try:
        with transaction.atomic():
            user = form.save()
    except IntegrityError:
        form.add_error("username", form.instance.unique_error_message(User, ("username",)))
        return None
    return user


class ApiTokenQuerySet(models.QuerySet):
    def for_user(self, user) -> ApiTokenQuerySet:
        return self.filter(user=user)

    def live(self) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, auth_token__isnull=False)


class ApiToken(models.Model):
    """A named API token ('my laptop', 'the IDE'): the knox token it names (gone once revoked, the
    name stays for the usage it recorded), and its own budget on top of the user's (checked in
    usage.budgets.reserve against the usage rows it recorded in the user's budget period)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    token_key = models.CharField(max_length=25, db_index=True)  # knox's non-secret prefix of the token
    auth_token = models.OneToOneField("knox.AuthToken", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="named")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    token_limit = models.BigIntegerField(null=True, blank=True, help_text="Empty means only the user's budget.")
    cost_limit = models.DecimalField(max_digits=16, decimal_places=8, null=True, blank=True,
                                     help_text="USD; empty means only the user's budget.")

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """How the token is named on pages, in titles and reports."""
        return self.name or f"token {self.token_key[:8]}"

    @property
    def has_budget(self) -> bool:
        return self.token_limit is not None or self.cost_limit is not None
