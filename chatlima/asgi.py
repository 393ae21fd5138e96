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
from chatlima.doors import DoorHandler, route_doors  # noqa: E402

atexit.register(close_pools)


def warm_up() -> None:
    """Load at start what a serving process would otherwise load on its first exchanges, on its event
    loop: each configured provider's adapter and SDK (anyio's asyncio backend, which the SDKs' HTTP
    clients use), genai-prices' bundled data and Celery's Redis transport. Measured: the first burst
    of 100 after a start spent ~2.5 s of the loop in imports, every client waiting (README,
    performance). Settings only, no database."""
    import importlib

    from chat import providers
    from usage import endpoints

    for name in endpoints.provider_order():
        try:
            if endpoints.provider_is_configured(name):
                providers.get_provider(name)
        except Exception:  # noqa: BLE001 - a provider that cannot load fails on its first use instead
            continue
    for module in ("anyio._backends._asyncio", "kombu.transport.redis"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
    try:
        importlib.import_module("genai_prices.data_snapshot").get_snapshot()
    except Exception:  # noqa: BLE001 - loaded on first use instead
        pass


if settings.CHATLIMA_WARM_UP:
    warm_up()

application = ProtocolTypeRouter(
    {
        # The exchange doors skip the pages' middleware stack (chatlima/doors.py says why).
        "http": route_doors(DoorHandler(), django_asgi_app),
        # An Origin from elsewhere is refused; a socket without one may authenticate only by ?token=.
        "websocket": AllowedHostsOrTokenOriginValidator(TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns))),
    }
)
