"""Celery tasks of the accounts app (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from accounts import tokens


@shared_task(name="accounts.delete_expired_tokens")
def delete_expired_tokens() -> int:
    return tokens.delete_expired_tokens()
