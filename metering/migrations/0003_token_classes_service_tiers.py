"""Token classes of DESIGN.md §1 (cache writes, audio, reasoning), the provider's usage
object on the ledger, and service tiers as catalog rows.

The ledger is created by raw SQL (0001), so its columns and checks are added the same
way: on the partitioned parent, which carries them to every partition. Existing rows
take 0 for the new counts, which is what an event without those fields means.
"""

from django.db import migrations, models

NEWER = ("cache_write_tokens", "cache_write_long_tokens", "audio_input_tokens", "audio_output_tokens",
         "reasoning_tokens")
SEEDED = (
    ("standard", "Served on shared capacity at list prices."),
    ("batch", "Asynchronous, served within 24 hours; typically half of standard."),
    ("priority", "Served ahead of standard traffic; typically double."),
    ("flex", "Served when capacity is idle, may be slower or queued; priced below standard."),
    ("provisioned", "Served from a customer's reserved throughput; covered by its unit-hour fee."),
)

LEDGER_SQL = f"""
ALTER TABLE metering_usage_event
    {", ".join(f"ADD COLUMN {name} bigint NOT NULL DEFAULT 0" for name in NEWER)},
    ADD COLUMN provider_usage jsonb NULL,
    DROP CONSTRAINT metering_usage_event_service_tier_check,
    ADD CONSTRAINT metering_usage_event_input_parts CHECK (
        cache_write_tokens >= 0 AND cache_write_long_tokens >= 0 AND audio_input_tokens >= 0
        AND cached_input_tokens + cache_write_tokens + cache_write_long_tokens + audio_input_tokens <= input_tokens),
    ADD CONSTRAINT metering_usage_event_output_parts CHECK (
        audio_output_tokens BETWEEN 0 AND output_tokens AND reasoning_tokens BETWEEN 0 AND output_tokens);
"""
LEDGER_REVERSE = f"""
ALTER TABLE metering_usage_event
    DROP CONSTRAINT metering_usage_event_input_parts,
    DROP CONSTRAINT metering_usage_event_output_parts,
    {", ".join(f"DROP COLUMN {name}" for name in NEWER)},
    DROP COLUMN provider_usage,
    ADD CONSTRAINT metering_usage_event_service_tier_check CHECK (service_tier IN ('standard', 'batch', 'priority'));
"""


def tiers_seed(apps, schema_editor):
    ServiceTier = apps.get_model("metering", "ServiceTier")
    for name, description in SEEDED:
        ServiceTier.objects.get_or_create(name=name, defaults={"description": description})


class Migration(migrations.Migration):
    dependencies = [("metering", "0002_model_tier_history")]

    operations = [
        migrations.CreateModel(
            name="ServiceTier",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.SlugField(max_length=16, unique=True)),
                ("description", models.CharField(blank=True, max_length=200)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"db_table": "metering_service_tier", "ordering": ["id"]},
        ),
        migrations.RunPython(tiers_seed, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(LEDGER_SQL, LEDGER_REVERSE)],
            state_operations=[
                *(migrations.AddField("usageevent", name, models.BigIntegerField(db_default=0)) for name in NEWER),
                migrations.AddField("usageevent", "provider_usage", models.JSONField(
                    blank=True, null=True, help_text="The provider's usage object the token fields were read from.")),
                migrations.AlterField("usageevent", "service_tier", models.CharField(max_length=16)),
            ],
        ),
        *(migrations.AddField("hourlyrollup", name, models.BigIntegerField(db_default=0)) for name in NEWER),
        migrations.AlterField("hourlyrollup", "service_tier", models.CharField(max_length=16)),
    ]
