from __future__ import annotations

import atexit
import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")
django_asgi_app = get_asgi_application()
if settings.CHATLIMA_SERVE_STATIC:
    # The app serves its own few static files so one daphne process is the whole app.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.ws_auth import AllowedHostsOrTokenOriginValidator, TokenOrSessionAuthMiddleware  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from chatlima.db import close_pools  # noqa: E402

atexit.register(close_pools)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # An Origin from elsewhere is refused; a socket without one may authenticate only by ?token=.
        "websocket": AllowedHostsOrTokenOriginValidator(TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
