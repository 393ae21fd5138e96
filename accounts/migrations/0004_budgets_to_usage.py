"""Budgets and their holds now live in usage (usage/migrations/0006): state only, the tables stay."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_shared_cache_table"),
        ("usage", "0006_budgets_from_accounts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="BudgetReservation"),
                migrations.DeleteModel(name="Budget"),
            ],
        ),
    ]
