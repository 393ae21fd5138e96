from __future__ import annotations

from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError

from accounts import login_throttle
from accounts.models import User


class SignupForm(UserCreationForm):
    """A username another account has up to case and whitespace is refused (User.validate_unique)."""

    class Meta:
        model = User
        fields = ("username",)


class LoginForm(AuthenticationForm):
    """Django's login form; a lockout is said as such, with how long it lasts (`locked_out`)."""

    locked_out: login_throttle.LockedOut | None = None

    def clean(self):
        try:
            return super().clean()
        except ValidationError:
            self.locked_out = login_throttle.lockout_of(self.request)
            if self.locked_out is None:
                raise
            raise ValidationError(self.locked_out.message, code="locked_out") from None
