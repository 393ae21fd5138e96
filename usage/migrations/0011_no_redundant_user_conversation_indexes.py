"""Drop the usage log's and the budget reservation's redundant single-column indexes.

Each is written on every exchange's insert and settle, and indexes that lead with the same column
cover them: `usage_request_unique_per_user` and `idx_usage_user` (the user's), `idx_usage_conversation`
(the very same index as the conversation's own), `reservation_request_unique_per_user`.

Django's own AlterField would also drop and re-add each foreign key constraint (a scan of the
table under lock): here only the index goes.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

REDUNDANT = [  # (index, table, column)
    ("api_usage_logs_conversation_id_2ed45745", "api_usage_logs", "conversation_id"),
    ("api_usage_logs_user_id_13f9cbd8", "api_usage_logs", "user_id"),
    ("accounts_budgetreservation_user_id_baf33b3d", "accounts_budgetreservation", "user_id"),
]


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0008_no_redundant_owner_conversation_indexes'),
        ('usage', '0010_usage_settled_at'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(f'DROP INDEX IF EXISTS "{name}"', f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")')
                for name, table, column in REDUNDANT
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='apiusagelog',
                    name='conversation',
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='usage_logs', to='chat.conversation'),
                ),
                migrations.AlterField(
                    model_name='apiusagelog',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='usage_logs', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='budgetreservation',
                    name='user',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='reservations', to=settings.AUTH_USER_MODEL),
                ),
            ],
        ),
    ]
