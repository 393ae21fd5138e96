from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class UsageConfig(AppConfig):
    name = "usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save, pre_save

        from usage.models import CatalogueEntry, ModelPrice, ProviderPrice
        from usage.pricing import forget_prices
        from usage.signals import exchange_settled

        exchange_settled.connect(_on_exchange_settled, dispatch_uid="usage.on_exchange_settled")
        for model in (ModelPrice, ProviderPrice, CatalogueEntry):
            name = model._meta.model_name
            post_save.connect(forget_prices, sender=model, dispatch_uid=f"usage.forget_prices_saved_{name}")
            post_delete.connect(forget_prices, sender=model, dispatch_uid=f"usage.forget_prices_deleted_{name}")
        user_model = get_user_model()
        pre_save.connect(_remember_timezone, sender=user_model, dispatch_uid="usage.remember_timezone")
        post_save.connect(_rebuild_on_timezone_change, sender=user_model, dispatch_uid="usage.timezone_change")


def _on_exchange_settled(sender, user_id: int, usage_log_id, usage_log=None, budget=None, **kwargs) -> None:
    """Log the exchange, keep its rollups current and send any budget alert; none may break the settled exchange.

    The pipeline sends the settled row and budget along (`usage_log`, `budget`): nothing is read back.
    """
    from usage.alerts import check_budget_alerts
    from usage.exchange_log import log_exchange
    from usage.models import ApiUsageLog
    from usage.tasks import refresh_rollups_soon

    try:
        if usage_log is None:
            usage_log = ApiUsageLog.objects.filter(pk=usage_log_id).first()
        if usage_log is not None:
            log_exchange(usage_log)
    except Exception:
        logger.exception("logging exchange %s failed", usage_log_id)
    try:
        refresh_rollups_soon(user_id, usage_log_id)
    except Exception:
        logger.exception("refreshing the rollup of exchange %s failed", usage_log_id)
    try:
        check_budget_alerts(user_id, budget)
    except Exception:
        logger.exception("budget alerts for user %s failed", user_id)


def _remember_timezone(sender, instance, raw: bool = False, update_fields=None, **kwargs) -> None:
    if raw or instance.pk is None or (update_fields is not None and "timezone" not in update_fields):
        instance._usage_old_timezone = None
        return
    instance._usage_old_timezone = sender.objects.filter(pk=instance.pk).values_list("timezone", flat=True).first()


def _rebuild_on_timezone_change(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """A user's days move with their time zone: recompute their rollups so no row counts on two days."""
    old = getattr(instance, "_usage_old_timezone", None)
    if created or raw or old is None or old == instance.timezone:
        return
    from django.db import transaction

    from usage.rollups import rebuild_user

    user_id = instance.pk
    transaction.on_commit(lambda: rebuild_user(user_id), robust=True)
