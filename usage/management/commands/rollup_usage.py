"""`python manage.py rollup_usage [--from YYYY-MM-DD] [--to YYYY-MM-DD]`: the rollup task's code over a range."""

from __future__ import annotations

from datetime import UTC, date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from usage.rollups import days_between, rollup_range


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from exc


class Command(BaseCommand):
    help = "Compute the daily usage rollups for a range of days (default: yesterday and today). Safe to re-run."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--from", dest="start", type=_date, help="first day, YYYY-MM-DD (default yesterday)")
        parser.add_argument("--to", dest="end", type=_date, help="last day, YYYY-MM-DD (default today)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, start: date | None, end: date | None, no_progress: bool, **options) -> None:
        today = timezone.now().astimezone(UTC).date()
        end = end or (today if start is None or start <= today else start)
        start = start or min(today - timedelta(days=1), end)
        if start > end:
            raise CommandError("--from must not be after --to")
        days = days_between(start, end)
        skipped: list[date] = []
        with tqdm(total=len(days), unit="day", disable=no_progress, file=self.stderr._out) as bar:

            def on_day(day: date, count: int | None) -> None:
                if count is None:
                    skipped.append(day)
                bar.set_postfix_str(day.isoformat())
                bar.update(1)

            written = rollup_range(start, end, on_day=on_day)
        message = f"Rolled up {len(days) - len(skipped)} day(s) from {start} to {end}: {written} rollup row(s)."
        if skipped:
            message += f" {len(skipped)} day(s) skipped: older than the usage retention horizon."
        self.stdout.write(self.style.SUCCESS(message))
