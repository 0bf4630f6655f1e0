from django.db import migrations

from billing import triggers_sql


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_invoicing")]

    operations = [migrations.RunSQL(triggers_sql.INVOICING_CREATE, triggers_sql.INVOICING_DROP)]
