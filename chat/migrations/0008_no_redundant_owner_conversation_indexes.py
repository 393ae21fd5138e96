"""Drop the conversation's and the message's single-column owner and conversation indexes.

Every index is written again on each insert and each non-HOT update (an exchange's settle), and
these are covered by indexes that lead with the same column: (owner, version), (owner, -updated_at)
and (owner, public_id); (conversation, timestamp).

Django's own AlterField would also drop and re-add each foreign key constraint (a scan of the
table under lock): here only the index goes.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

REDUNDANT = [  # (index, table, column)
    ("chat_conversation_owner_id_0460d4a2", "chat_conversation", "owner_id"),
    ("chat_message_conversation_id_a1207bf4", "chat_message", "conversation_id"),
    ("chat_message_owner_id_20a4d94c", "chat_message", "owner_id"),
]


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0007_message_versions'),
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
                    model_name='conversation',
                    name='owner',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='conversations', to=settings.AUTH_USER_MODEL),
                ),
                migrations.AlterField(
                    model_name='message',
                    name='conversation',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='chat.conversation'),
                ),
                migrations.AlterField(
                    model_name='message',
                    name='owner',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='messages', to=settings.AUTH_USER_MODEL),
                ),
            ],
        ),
    ]
