from django.apps import AppConfig
from django.db.models.signals import post_migrate


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self):
        from billing.permissions import finance_groups_sync
        from billing.schedule import beat_defaults_install

        # Setup, not domain flow: the finance groups follow the permissions that exist.
        # No sender: run after every app's migrations, once its permissions exist.
        post_migrate.connect(finance_groups_sync, dispatch_uid="billing.finance_groups_sync")
        post_migrate.connect(beat_defaults_install, dispatch_uid="billing.beat_defaults_install")
