"""Usage adjustments (DESIGN.md §6): append-only like the ledger, by the same trigger
function; REST adjustments take their source offsets from a sequence of their own."""

from django.db import migrations, models

APPEND_ONLY = """
CREATE TRIGGER metering_usage_adjustment_append_only BEFORE UPDATE OR DELETE ON metering_usage_adjustment
    FOR EACH ROW EXECUTE FUNCTION metering_ledger_reject_change();
CREATE SEQUENCE metering_rest_source_offset_seq AS bigint;
"""
APPEND_ONLY_REVERSE = """
DROP SEQUENCE metering_rest_source_offset_seq;
DROP TRIGGER metering_usage_adjustment_append_only ON metering_usage_adjustment;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('metering', '0003_token_classes_service_tiers'),
    ]

    operations = [
        migrations.AddField(
            model_name='usageduplicate',
            name='adjustment_id',
            field=models.CharField(blank=True, db_default='', max_length=128),
        ),
        migrations.CreateModel(
            name='UsageAdjustment',
            fields=[
                ('source_topic', models.CharField(max_length=249)),
                ('source_partition', models.IntegerField()),
                ('source_offset', models.BigIntegerField()),
                ('source_index', models.IntegerField()),
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('adjustment_id', models.CharField(max_length=128)),
                ('customer_id', models.CharField(max_length=64)),
                ('event_id', models.CharField(max_length=128)),
                ('sequence', models.PositiveIntegerField(help_text="1 for the event's first adjustment, then 2, ...")),
                ('action', models.CharField(choices=[('void', 'Void'), ('replace', 'Replace')], max_length=8)),
                ('replacement', models.JSONField(blank=True, help_text='The token fields after a replacement.', null=True)),
                ('reason', models.CharField(max_length=500)),
                ('actor', models.CharField(help_text='The API key or the Kafka topic it came by.', max_length=150)),
                ('recorded_at', models.DateTimeField()),
                ('occurred_at', models.DateTimeField(help_text="The adjusted event's timestamp: the hour it applies in.")),
                ('model', models.CharField(max_length=128)),
                ('service_tier', models.CharField(max_length=16)),
                ('region', models.CharField(blank=True, max_length=64)),
                ('cluster', models.CharField(blank=True, max_length=64)),
                ('events', models.SmallIntegerField(help_text='-1 for a void, 0 for a replacement.')),
                ('input_tokens', models.BigIntegerField()),
                ('cached_input_tokens', models.BigIntegerField()),
                ('output_tokens', models.BigIntegerField()),
                ('cache_write_tokens', models.BigIntegerField()),
                ('cache_write_long_tokens', models.BigIntegerField()),
                ('audio_input_tokens', models.BigIntegerField()),
                ('audio_output_tokens', models.BigIntegerField()),
                ('reasoning_tokens', models.BigIntegerField()),
            ],
            options={
                'db_table': 'metering_usage_adjustment',
                'ordering': ['-id'],
                'indexes': [models.Index(fields=['customer_id', 'occurred_at'], name='metering_us_custome_3e20f2_idx'), models.Index(fields=['occurred_at'], name='metering_us_occurre_c34817_idx')],
                'constraints': [models.UniqueConstraint(fields=('customer_id', 'adjustment_id'), name='usage_adjustment_once'), models.UniqueConstraint(fields=('customer_id', 'event_id', 'sequence'), name='usage_adjustment_sequence_once'), models.UniqueConstraint(fields=('source_topic', 'source_partition', 'source_offset', 'source_index'), name='usage_adjustment_once_per_element'), models.CheckConstraint(condition=models.Q(models.Q(('action', 'void'), ('events', -1), ('replacement__isnull', True)), models.Q(('action', 'replace'), ('events', 0), ('replacement__isnull', False)), _connector='OR'), name='usage_adjustment_action_shape')],
            },
        ),
        migrations.RunSQL(APPEND_ONLY, APPEND_ONLY_REVERSE),
    ]
