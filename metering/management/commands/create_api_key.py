"""python manage.py create_api_key --scope SCOPE [--customer ID] [--name NAME]"""

from django.core.management.base import BaseCommand, CommandError

from metering.models import ApiKey, Customer
from metering.services import ApiKeyScopeInvalid, api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it. It is stored only as a hash: copy it now."

    def add_arguments(self, parser):
        parser.add_argument("--scope", required=True, choices=ApiKey.Scope.values)
        parser.add_argument("--customer", default=None, help="customer_id, required for --scope customer")
        parser.add_argument("--name", default="")

    def handle(self, *args, scope, customer, name, **options):
        try:
            _, raw_key = api_key_create(scope=scope, customer_id=customer, name=name)
        except (ApiKeyScopeInvalid, Customer.DoesNotExist) as exc:
            raise CommandError(str(exc) or f"No customer '{customer}'.") from exc
        self.stdout.write(raw_key)
