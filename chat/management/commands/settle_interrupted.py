"""Settle the exchanges a stopped server left pending as `interrupted` (run before the server starts)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from chat.exchange import settle_interrupted_exchanges, settle_stale_exchanges
from usage.budgets import expire_stale_reservations


class Command(BaseCommand):
    help = "Settle pending exchanges as interrupted, keeping partial answers and releasing their holds."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--stale-only", action="store_true",
            help="Only exchanges whose heartbeat stopped (safe while other servers are running).",
        )

    def handle(self, *args, **options) -> None:
        settled = settle_stale_exchanges() if options["stale_only"] else settle_interrupted_exchanges()
        expired = expire_stale_reservations()
        self.stdout.write(f"settled {settled} interrupted exchange(s), expired {expired} hold(s)")
