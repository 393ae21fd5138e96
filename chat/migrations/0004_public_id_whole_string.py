"""Ids match their pattern as a whole string: "conv_1\n" is no longer a valid public id.

Only the field validators change (`chat.ids.ID_PATTERN` now ends in \\Z); no column changes.
"""

import chat.ids
import django.core.validators
import re
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0003_repair_out_of_range_dates'),
    ]

    operations = [
        migrations.AlterField(
            model_name='conversation',
            name='public_id',
            field=models.CharField(default=chat.ids.new_conversation_id, max_length=64, validators=[django.core.validators.RegexValidator(re.compile('\\A[A-Za-z0-9_-]{1,64}\\Z'), "Ids are 1 to 64 letters, digits, '_' or '-'.")]),
        ),
        migrations.AlterField(
            model_name='message',
            name='public_id',
            field=models.CharField(default=chat.ids.new_message_id, max_length=64, validators=[django.core.validators.RegexValidator(re.compile('\\A[A-Za-z0-9_-]{1,64}\\Z'), "Ids are 1 to 64 letters, digits, '_' or '-'.")]),
        ),
    ]
