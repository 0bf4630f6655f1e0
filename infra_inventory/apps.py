from django.apps import AppConfig


class InfraInventoryConfig(AppConfig):
    name = "infra_inventory"
    verbose_name = "Infrastructure inventory"
