from django.db import migrations

from billing import immutability_sql


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunSQL(immutability_sql.CREATE, immutability_sql.DROP)]
