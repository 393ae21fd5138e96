"""Periodic work for exchanges: thin tasks over functions the tests call directly."""

from __future__ import annotations

from celery import shared_task

from chat.exchange import settle_interrupted_exchanges as _settle_stale
from usage.budgets import expire_stale_reservations


@shared_task(name="chat.tasks.expire_reservations")
def expire_reservations() -> dict:
    """Settle exchanges whose heartbeat stopped as `interrupted`, then expire any hold still open."""
    settled = _settle_stale()
    expired = expire_stale_reservations()
    return {"settled": settled, "expired": expired}


@shared_task(name="chat.tasks.settle_stale_exchanges")
def settle_stale_exchanges() -> int:
    return _settle_stale()


@shared_task(name="chat.tasks.refresh_models")
def refresh_models() -> dict:
    """The daily catalogue refresh (chat.catalogue.refresh_models)."""
    from chat.catalogue import refresh_models as refresh

    done = refresh()
    return {"recorded": {r.provider: r.listed for r in done.recorded}, "failed": done.failed}
