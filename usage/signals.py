"""Signals other parts listen to, so `usage` and `chat` need not import each other's internals."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the settle transaction of an exchange commits (on_commit),
# with kwargs user_id, usage_log_id and, from the pipeline, usage_log and budget as settled.
exchange_settled = Signal()
