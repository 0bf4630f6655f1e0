from django.db import migrations

from billing import triggers_sql


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunSQL(triggers_sql.PRICING_CREATE, triggers_sql.PRICING_DROP)]
