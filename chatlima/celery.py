from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatlima.settings")

app = Celery("chatlima")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.celeryd_init.connect
def size_the_database_pool(options: dict | None = None, **_: object) -> None:
    """A worker needs as many pooled connections as it runs tasks at once, not a server's share.

    Each prefork (or solo) child runs one task at a time: one connection, held only during a task
    (Celery's Django fixup closes a prefork child's pool after each task). A threads/gevent/eventlet
    worker runs `--concurrency` at once. Runs in the worker's main process before it forks and before
    any connection is opened, so every child gets this size.
    """
    from django.conf import settings

    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if not isinstance(pool, dict):
        return
    options = options or {}
    kind = options.get("pool_cls") or options.get("pool") or "prefork"  # a name, or the pool's class
    name = kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"
    one_at_a_time = any(word in name for word in ("prefork", "solo", "processes"))
    parallel = 1 if one_at_a_time else int(options.get("concurrency") or 1)
    size = max(1, min(pool["max_size"], parallel))
    pool.update(min_size=min(pool["min_size"], 1), max_size=size)
