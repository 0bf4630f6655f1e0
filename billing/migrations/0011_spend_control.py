"""Spend control: budgets, live spend, alerts. An existing ledger gets its usage
boundaries (price books, model tier changes, rentals) and its usage segments from the
hourly rollups, as `metering.projections` builds them."""

import django.db.models.deletion
from django.db import migrations, models


TOKENS = ("input_tokens", "cached_input_tokens", "output_tokens", "cache_write_tokens", "cache_write_long_tokens",
          "audio_input_tokens", "audio_output_tokens", "reasoning_tokens")
BACKFILL = f"""
INSERT INTO metering_usage_boundary (at)
SELECT effective_from FROM billing_pricebook WHERE status = 'published'
UNION SELECT effective_from FROM metering_modeltierchange
UNION SELECT starts_at FROM billing_rental
UNION SELECT ends_at FROM billing_rental WHERE ends_at IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO metering_usage_segment (customer_id, starts_at, model, service_tier, cluster, events, {", ".join(TOKENS)})
SELECT customer_id,
       greatest(date_trunc('month', hour, 'UTC'), (SELECT max(b.at) FROM metering_usage_boundary b WHERE b.at <= hour)),
       model, service_tier, cluster, sum(events)::bigint, {", ".join(f"sum({t})::bigint" for t in TOKENS)}
FROM metering_hourly_rollup GROUP BY 1, 2, 3, 4, 5;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0010_capacity'),
        ('metering', '0005_spend_control'),
    ]

    operations = [
        migrations.CreateModel(
            name='Budget',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('monthly_limit', models.DecimalField(decimal_places=2, max_digits=14)),
                ('thresholds', models.JSONField(blank=True, default=list, help_text='Percentages of the limit, e.g. [50, 80, 100].')),
                ('hard', models.BooleanField(default=False, help_text='Refuse (allowed: false) at 100% of the limit.')),
                ('updated_at', models.DateTimeField()),
                ('updated_by', models.CharField(max_length=150)),
                ('customer', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='budget', to='metering.customer')),
            ],
            options={
                'ordering': ['customer'],
                'constraints': [models.CheckConstraint(condition=models.Q(('monthly_limit__gt', 0)), name='budget_limit_positive')],
            },
        ),
        migrations.CreateModel(
            name='Spend',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('period', models.DateField(help_text='The first day of the month.')),
                ('spend', models.DecimalField(decimal_places=2, max_digits=16)),
                ('credit_balance', models.DecimalField(decimal_places=2, max_digits=16)),
                ('credit_entry_last', models.BigIntegerField(default=0, help_text='The newest credit entry counted.')),
                ('unpriced', models.BooleanField(default=False, help_text='Some usage has no price yet and is not counted.')),
                ('computed_at', models.DateTimeField()),
                ('customer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='spends', to='metering.customer')),
            ],
            options={
                'ordering': ['customer', 'period'],
                'constraints': [models.UniqueConstraint(fields=('customer', 'period'), name='spend_one_per_period')],
            },
        ),
        migrations.CreateModel(
            name='SpendAlert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('budget.threshold_crossed', 'budget threshold crossed'), ('credit.exhausted', 'credit exhausted')], max_length=32)),
                ('key', models.CharField(max_length=64)),
                ('period', models.DateField()),
                ('threshold', models.PositiveIntegerField(blank=True, null=True)),
                ('spend', models.DecimalField(decimal_places=2, max_digits=16)),
                ('limit', models.DecimalField(decimal_places=2, help_text='The budget limit or the credit balance.', max_digits=16)),
                ('created_at', models.DateTimeField()),
                ('customer', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='spend_alerts', to='metering.customer')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'constraints': [models.UniqueConstraint(fields=('customer', 'key'), name='spend_alert_once')],
            },
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
