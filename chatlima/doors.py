"""The exchange doors' own ASGI handler: Django without the middleware stack the pages need.

Django runs every hook of a `MiddlewareMixin` middleware (all of Django's own) of an async request
through `sync_to_async(thread_sensitive=True)`: one shared thread, so each request's ~13 hops
(security, sessions, common, CSRF with its `process_view`, auth, messages, X-Frame-Options, in
and out) queue behind every other request's, and each hop waits for the GIL. For the streaming
doors that was most of the SSE door's delay to its first chunk under load (README, performance).

The doors (`POST /api/v1/chat/stream`, `POST /api/v1/chat/send` and the OpenAI-compatible `/v1/`)
authenticate themselves (chat/stream_views.py, chat/openai_door.py: Bearer token, or the browser
session with its CSRF token, read on the database thread they already take) and answer JSON or
event streams, so they need only what every answer needs: the security headers and redirect
(`SecurityMiddleware`, whose hooks only compute and here run on the event loop), the contract's
refusals of bad input (`BadInputMiddleware`) and the JSON 503 when the database pool is exhausted
(`ServiceUnavailableMiddleware`). Every other path goes through the whole stack as before.

`DoorHandler.handle` is Django 5.2's `ASGIHandler.handle` with one change: the request_started
and request_finished signals (their receivers reset the query log and tidy the thread's database
connections and caches) are sent on the event loop instead of through that one thread. Under a
burst every request waited its turn there twice, and each turn for the GIL (up to the 5 ms switch
interval while the loop was busy). 100 SSE requests at once, overhead to the first chunk p50:
1311-1814 ms with the hops, 1003-1187 ms without (bench/peer_compare.py --doors sse, three
interleaved runs; the duration's 1405-1802 -> 1264-1357 ms). The doors do no database
work on the event loop (it is all in `run_db`'s threads), so those receivers find nothing to tidy
there.
"""

from __future__ import annotations

import asyncio

from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.security import SecurityMiddleware
from django.urls import set_script_prefix

from chatlima.db import ServiceUnavailableMiddleware
from chatlima.middleware import BadInputMiddleware

DOOR_PATHS = frozenset({"/api/v1/chat/stream", "/api/v1/chat/send"})
DOOR_PREFIX = "/v1/"


def is_door(path: str) -> bool:
    return path in DOOR_PATHS or path.startswith(DOOR_PREFIX)


class InlineSecurityMiddleware(SecurityMiddleware):
    """Django's SecurityMiddleware with its two hooks called on the event loop (they read settings
    and headers only), instead of one thread hop each."""

    async def __acall__(self, request):
        response = self.process_request(request)
        response = response or await self.get_response(request)
        return self.process_response(request, response)


class DoorHandler(ASGIHandler):
    """Django's ASGI handler with the doors' middleware only, its signals sent on the event loop
    (see the module docstring)."""

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)  # Django: asend, one hop
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request(request, send):
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client went away while the response was being sent
            return response

        # As Django: listen for the client's disconnect while the response is made and sent.
        tasks = [asyncio.create_task(self.listen_for_disconnect(receive)),
                 asyncio.create_task(process_request(request, send))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        try:
            response = tasks[1].result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()  # sends request_finished; Django: through sync_to_async, one hop
        body_file.close()

    def load_middleware(self, is_async: bool = True) -> None:
        # BaseHandler.load_middleware's own steps, over a fixed list instead of settings.MIDDLEWARE;
        # an ASGI handler always loads them async.
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        unavailable = ServiceUnavailableMiddleware(handler)
        # Django's exception hooks are always called synchronously (as in BaseHandler).
        self._exception_middleware.append(self.adapt_method_mode(False, unavailable.process_exception))
        for middleware in (BadInputMiddleware, InlineSecurityMiddleware):  # innermost first
            handler = convert_exception_to_response(middleware(handler))
        self._middleware_chain = handler


def route_doors(doors, everything_else):
    """An ASGI app sending the doors' HTTP requests to `doors`, every other one to `everything_else`."""

    async def app(scope, receive, send):
        target = doors if scope["type"] == "http" and is_door(scope.get("path", "")) else everything_else
        return await target(scope, receive, send)

    return app
