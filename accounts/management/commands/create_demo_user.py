from __future__ import annotations

from django.core.management.base import BaseCommand

from accounts.models import User

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "chatlima-demo"


class Command(BaseCommand):
    help = "Create the demo account if it does not exist, and print its login."

    def handle(self, *args, **options) -> None:
        user, created = User.objects.get_or_create(username=DEMO_USERNAME)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        state = "created" if created else "already exists"
        self.stdout.write(f"Demo account {state}: username '{DEMO_USERNAME}', password '{DEMO_PASSWORD}'")
