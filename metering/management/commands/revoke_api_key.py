"""python manage.py revoke_api_key KEY — KEY is the key's prefix (as admin lists it) or the whole key."""

from django.core.management.base import BaseCommand, CommandError

from metering.services import ApiKeyNotFound, api_key_revoke, utc_now


class Command(BaseCommand):
    help = "Revoke an API key: every request that carries it is refused from now on."

    def add_arguments(self, parser):
        parser.add_argument("key", help="The key's prefix (first 10 characters, shown in admin) or the whole key.")

    def handle(self, *args, key, **options):
        try:
            api_key = api_key_revoke(key=key.strip(), as_of=utc_now())
        except ApiKeyNotFound as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"revoked {api_key} at {api_key.revoked_at.isoformat()}")
