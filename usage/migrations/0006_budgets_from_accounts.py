"""Budgets and their holds move from accounts to usage, beside the rules that use them (usage.budgets,
usage.alerts): state only, the tables keep their names (Meta.db_table), nothing in the database changes."""

from decimal import Decimal

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_shared_cache_table"),
        ("usage", "0005_usage_source_none"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Budget',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('period', models.CharField(choices=[('daily', 'Daily'), ('weekly', 'Weekly'), ('monthly', 'Monthly')], default='monthly', max_length=16)),
                        ('token_limit', models.BigIntegerField(blank=True, help_text='Empty means unlimited.', null=True)),
                        ('cost_limit', models.DecimalField(blank=True, decimal_places=6, help_text='USD per period; empty means unlimited.', max_digits=14, null=True)),
                        ('period_start', models.DateTimeField(default=django.utils.timezone.now)),
                        ('last_reset_at', models.DateTimeField(blank=True, null=True)),
                        ('tokens_used', models.BigIntegerField(default=0)),
                        ('cost_used', models.DecimalField(decimal_places=8, default=Decimal('0'), max_digits=16)),
                        ('tokens_held', models.BigIntegerField(default=0)),
                        ('cost_held', models.DecimalField(decimal_places=8, default=Decimal('0'), max_digits=16)),
                        ('alert_80_sent_at', models.DateTimeField(blank=True, null=True)),
                        ('alert_100_sent_at', models.DateTimeField(blank=True, null=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='budget', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'accounts_budget',
                        'constraints': [models.CheckConstraint(condition=models.Q(('tokens_used__gte', 0)), name='budget_tokens_used_nonnegative'), models.CheckConstraint(condition=models.Q(('tokens_held__gte', 0)), name='budget_tokens_held_nonnegative')],
                    },
                ),
                migrations.CreateModel(
                    name='BudgetReservation',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('request_id', models.CharField(max_length=64)),
                        ('tokens', models.BigIntegerField()),
                        ('cost', models.DecimalField(decimal_places=8, default=Decimal('0'), max_digits=16)),
                        ('state', models.CharField(choices=[('held', 'Held'), ('settled', 'Settled'), ('released', 'Released'), ('expired', 'Expired')], default='held', max_length=16)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('expires_at', models.DateTimeField()),
                        ('closed_at', models.DateTimeField(blank=True, null=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='reservations', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'accounts_budgetreservation',
                        'indexes': [models.Index(fields=['state', 'expires_at'], name='accounts_bu_state_344926_idx')],
                        'constraints': [models.UniqueConstraint(fields=('user', 'request_id'), name='reservation_request_unique_per_user')],
                    },
                ),
            ],
        ),
    ]
