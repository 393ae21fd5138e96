"""`python manage.py reprice --from YYYY-MM-DD --to YYYY-MM-DD [--provider P] [--model M] [--dry-run]`."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from chat.repricing import reprice


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from exc


class Command(BaseCommand):
    help = ("Recompute the costs of the usage rows of a period (UTC days) at the prices in force on their days, "
            "and the message costs, conversation totals, budgets and rollups summed from them; logs what changed.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--from", dest="start", type=_date, required=True, help="first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", type=_date, required=True, help="last day, YYYY-MM-DD")
        parser.add_argument("--provider", default="", help="only this provider's rows")
        parser.add_argument("--model", default="", help="only this model's rows")
        parser.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")

    def handle(self, *args, start: date, end: date, provider: str, model: str, dry_run: bool, **options) -> None:
        if start > end:
            raise CommandError("--from must not be after --to")
        log = reprice(start, end, provider=provider, model=model, dry_run=dry_run)
        for change in log.changes:
            self.stdout.write(f"{change['provider']}/{change['model_name']}: {change['rows']} rows, "
                              f"{change['cost_before']} -> {change['cost_after']}")
        verb = "would change" if dry_run else "changed"
        self.stdout.write(f"{log.rows_examined} rows examined, {log.rows_changed} {verb}: "
                          f"{log.cost_before} -> {log.cost_after} USD")
