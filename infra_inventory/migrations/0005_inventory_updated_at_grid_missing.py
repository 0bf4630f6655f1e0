"""Inventory rows say when they were last written (services.hours_stale compares it with
each hour's `allocated_at`), and a cluster-hour says when its grid intensity was missing.

Rows that exist before this migration get the epoch: they count as written before any
allocation, so deploying it re-allocates nothing. An inventory edit made before it, over
hours already allocated, is not known: re-allocate those hours with
`manage.py allocate_costs --from … --to …`.
"""

from datetime import UTC, datetime

from django.db import migrations, models

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HELP = ("When this row was last written: hours allocated before then that it prices are allocated again "
        "(services.hours_stale).")
INVENTORY = ("hardwaresku", "datacenter", "powercontract", "gridintensity", "cluster", "lease", "deployment")


class Migration(migrations.Migration):

    dependencies = [
        ("infra_inventory", "0004_leases_rentals_carbon"),
    ]

    operations = [
        *(migrations.AddField(model_name=name, name="updated_at",
                              field=models.DateTimeField(auto_now=True, default=EPOCH, help_text=HELP),
                              preserve_default=False)
          for name in INVENTORY),
        migrations.AddField(
            model_name="clusterhourcost", name="grid_intensity_missing",
            field=models.BooleanField(db_default=False, help_text=(
                "No grid intensity in force at the datacenter: the emissions are the embodied share only, the "
                "grid's are not known (never counted as 0).")),
        ),
        migrations.AddIndex(
            model_name="clusterhourcost",
            index=models.Index(condition=models.Q(("rented_to", ""), _negated=True), fields=["hour"],
                               name="cluster_hour_cost_rented"),
        ),
        migrations.AddIndex(
            model_name="clusterhourcost",
            index=models.Index(condition=models.Q(("grid_intensity_missing", True)), fields=["hour"],
                               name="cluster_hour_cost_no_grid"),
        ),
    ]
