"""`python manage.py refresh_models [--provider NAME ...]`: the model catalogue from every configured provider."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chat.catalogue import refresh_models
from usage import endpoints


class Command(BaseCommand):
    help = "Ask every configured provider for its models and prices and record them. Safe to re-run."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--provider", action="append", dest="providers", metavar="NAME",
                            help="only this provider (repeatable)")

    def handle(self, *args, providers: list[str] | None, **options) -> None:
        unknown = [name for name in providers or () if not endpoints.is_known(name)]
        if unknown:
            raise CommandError(f"unknown provider(s): {', '.join(unknown)}")
        done = refresh_models(providers)
        for r in done.recorded:
            self.stdout.write(
                f"{r.provider}: {r.listed} listed, {r.added} new, {r.returned} back, {r.vanished} gone, "
                f"{r.renamed} renamed, {r.prices_changed} prices changed"
                + (f", {len(r.skipped)} skipped (id too long)" if r.skipped else "")
            )
        for name, reason in done.failed.items():
            self.stderr.write(f"{name}: failed ({reason}); its catalogue is unchanged")
        self.stdout.write(f"done in {done.seconds:.2f}s")
        if done.failed and not done.recorded:
            raise CommandError("every provider failed")
