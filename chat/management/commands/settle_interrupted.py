"""Settle the exchanges a stopped server left pending as `interrupted` (run when a server starts).

Only exchanges whose heartbeat has stopped are touched: another live server's streams keep
beating (chat.partials) and are left alone. With `--wait`, exchanges that were still beating are
looked at again once the heartbeat window has passed, so a server killed just before this one
started is settled too.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand

from chat.exchange import has_fresh_pending, settle_interrupted_exchanges
from usage.budgets import expire_stale_reservations


class Command(BaseCommand):
    help = "Settle pending exchanges whose heartbeat stopped as interrupted, keeping partial answers."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--wait", action="store_true",
            help="If some pending exchanges are still beating, look again once their heartbeat window has passed.",
        )
        parser.add_argument("--stale-only", action="store_true", help="Kept for old scripts: this is always so.")

    def handle(self, *args, **options) -> None:
        settled = settle_interrupted_exchanges()
        if options["wait"] and has_fresh_pending():
            time.sleep(settings.CHATLIMA_HEARTBEAT_STALE_SECONDS + settings.CHATLIMA_PARTIAL_SAVE_SECONDS)
            settled += settle_interrupted_exchanges()
        expired = expire_stale_reservations()
        self.stdout.write(f"settled {settled} interrupted exchange(s), expired {expired} hold(s)")
