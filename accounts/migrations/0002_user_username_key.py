"""Every user gets `username_key` (accounts.models.canonical_username), unique: logins, sign-up and
lockouts compare usernames by it. Accounts that already differ only by case or whitespace stop the
migration with their names: rename one of them (in the admin) and migrate again."""

from django.db import migrations, models

import accounts.models


def fill_username_keys(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    owners: dict[str, str] = {}
    for pk, username in User.objects.values_list("pk", "username").order_by("pk"):
        key = accounts.models.canonical_username(username)
        if key in owners:
            raise RuntimeError(
                f"Users {owners[key]!r} and {username!r} differ only by case or whitespace: rename one and migrate again."
            )
        owners[key] = username
        User.objects.filter(pk=pk).update(username_key=key)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelManagers(
            name="user",
            managers=[
                ("objects", accounts.models.UserManager()),
            ],
        ),
        migrations.AddField(
            model_name="user",
            name="username_key",
            field=models.TextField(editable=False, null=True),
        ),
        migrations.RunPython(fill_username_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="username_key",
            field=models.TextField(editable=False, unique=True),
        ),
    ]
