from django.db import migrations

from billing import invoice_sql


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_invoicing")]

    operations = [migrations.RunSQL(invoice_sql.CREATE, invoice_sql.DROP)]
