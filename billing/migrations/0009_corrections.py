"""Corrections (DESIGN.md §6): debit notes, re-ratings, the invoice's adjustment
watermark, corrective price book revisions."""

import django.db.models.deletion
from django.db import migrations, models

from billing.triggers_sql import CORRECTIONS_CREATE, CORRECTIONS_DROP


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0008_token_classes_service_tiers'),
    ]

    operations = [
        migrations.CreateModel(
            name='DebitNote',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.CharField(max_length=16, unique=True)),
                ('amount', models.DecimalField(decimal_places=2, max_digits=14)),
                ('reason', models.CharField(max_length=500)),
                ('created_by', models.CharField(max_length=150)),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Rerating',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('difference', models.DecimalField(decimal_places=2, max_digits=14)),
                ('lines', models.JSONField()),
                ('billed_after', models.JSONField()),
                ('reason', models.CharField(max_length=500)),
                ('created_by', models.CharField(max_length=150)),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['-id'],
            },
        ),
        migrations.AlterModelOptions(
            name='pricebook',
            options={'ordering': ['-effective_from', '-revision'], 'permissions': [('publish_pricebook', 'Can publish price books')]},
        ),
        migrations.RemoveConstraint(
            model_name='pricebook',
            name='price_book_one_published_per_instant',
        ),
        migrations.AddField(
            model_name='invoice',
            name='adjustments_through',
            field=models.BigIntegerField(blank=True, help_text='Id of the last usage adjustment of the customer its usage includes.', null=True),
        ),
        migrations.AddField(
            model_name='pricebook',
            name='corrects',
            field=models.ForeignKey(blank=True, help_text='The published version this one corrects, from the same instant.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='corrections', to='billing.pricebook'),
        ),
        migrations.AddField(
            model_name='pricebook',
            name='revision',
            field=models.PositiveIntegerField(default=0, help_text='0, or one more than the version it corrects.'),
        ),
        migrations.AddConstraint(
            model_name='pricebook',
            constraint=models.UniqueConstraint(condition=models.Q(('status', 'published')), fields=('effective_from', 'revision'), name='price_book_one_published_per_instant'),
        ),
        migrations.AddField(
            model_name='debitnote',
            name='invoice',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='debit_notes', to='billing.invoice'),
        ),
        migrations.AddField(
            model_name='rerating',
            name='credit_note',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='rerating', to='billing.creditnote'),
        ),
        migrations.AddField(
            model_name='rerating',
            name='debit_note',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='rerating', to='billing.debitnote'),
        ),
        migrations.AddField(
            model_name='rerating',
            name='invoice',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='reratings', to='billing.invoice'),
        ),
        migrations.AddConstraint(
            model_name='debitnote',
            constraint=models.CheckConstraint(condition=models.Q(('amount__gt', 0)), name='debit_note_amount_positive'),
        ),
        migrations.AddConstraint(
            model_name='rerating',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('credit_note__isnull', False), ('debit_note__isnull', True), ('difference__lt', 0)), models.Q(('credit_note__isnull', True), ('debit_note__isnull', False), ('difference__gt', 0)), _connector='OR'), name='rerating_one_document'),
        ),
        migrations.RunSQL(CORRECTIONS_CREATE, CORRECTIONS_DROP),
    ]
