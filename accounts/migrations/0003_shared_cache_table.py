"""The table of the shared cache without Redis (settings.CACHES: chatlima.cache.DatabaseCache).

Made here, so every path that migrates (make run, make test, CI, pytest-django's test databases, the
end-to-end servers' databases, a fresh machine) has it, whatever cache the settings name when it
runs; Django's own `createcachetable` code creates it, and skips a table that already exists."""

from django.db import migrations

TABLE = "chatlima_cache"


def create_cache_table(apps, schema_editor):
    from django.core.management.commands.createcachetable import Command

    command = Command()
    command.verbosity = 0
    command.create_table(schema_editor.connection.alias, TABLE, dry_run=False)


def drop_cache_table(apps, schema_editor):
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(TABLE)}")


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0002_user_username_key"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, drop_cache_table),
    ]
