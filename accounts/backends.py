"""The one authentication backend: Django's ModelBackend under the login lockouts.

Every password check goes through django.contrib.auth.authenticate() and so through here: the login
page, the API's token endpoint and the admin's login alike are counted and locked out (a door of its
own would leave the others open). The username is looked up by its canonical spelling
(accounts.models.UserManager.get_by_natural_key), the same one the lockout counts.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from accounts import login_throttle


class LockoutModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        """The user, or None; a lockout raises LockedOut (a PermissionDenied), kept on the request.

        authenticate() stops at the PermissionDenied and answers None; the door then reads
        `login_throttle.lockout_of(request)` to say how long the lockout lasts.
        """
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if not isinstance(username, str) or password is None:
            return None
        try:
            attempt = login_throttle.begin(username, login_throttle.client_address(request))
        except login_throttle.LockedOut as locked:
            login_throttle.refuse(request, locked)
            raise
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            attempt.failed()
        else:
            attempt.succeeded()
        return user
