"""The finance groups and what each may do, kept in sync on every migrate.

- finance-manager: publishes prices, changes contracts, adds reservation versions and
  rentals (and ends them earlier), grants credits, sets and deletes budgets, adds service tiers, applies
  re-ratings, and reads everything.
- finance-viewer: reads billing and metering data, changes nothing.
"""

from django.contrib.auth.models import Group, Permission

FINANCE_MANAGER = "finance-manager"
FINANCE_VIEWER = "finance-viewer"
FINANCE_APPS = ("billing", "metering", "infra_inventory")
MANAGER_EXTRA = {
    "billing": ["publish_pricebook", "add_pricebook", "change_pricebook", "delete_pricebook", "add_price", "change_price",
                "delete_price", "add_contract", "change_contract", "add_contractprice", "change_contractprice",
                "delete_contractprice", "add_contractvolumeband", "change_contractvolumeband",
                "delete_contractvolumeband", "add_creditentry", "add_billingrun", "change_invoice", "add_creditnote",
                "add_rerating", "add_reservation", "change_reservation", "add_rental",
                "change_rental", "add_budget", "change_budget", "delete_budget"],
    "metering": ["add_servicetier", "change_servicetier"],
    # The fleet inventory and measured power; the allocation tables are derived, never edited.
    "infra_inventory": ["add_hardwaresku", "change_hardwaresku", "add_datacenter", "change_datacenter",
                        "add_powercontract", "change_powercontract", "add_cluster", "change_cluster",
                        "add_deployment", "change_deployment", "add_powerreading", "change_powerreading",
                        "add_lease", "change_lease", "add_gridintensity", "change_gridintensity"],
}


def finance_groups_sync(**_kwargs) -> None:
    viewing = Permission.objects.filter(content_type__app_label__in=FINANCE_APPS, codename__startswith="view_")
    viewer, _ = Group.objects.get_or_create(name=FINANCE_VIEWER)
    viewer.permissions.set(viewing)
    manager, _ = Group.objects.get_or_create(name=FINANCE_MANAGER)
    extra = Permission.objects.none()
    for app_label, codenames in MANAGER_EXTRA.items():
        extra |= Permission.objects.filter(content_type__app_label=app_label, codename__in=codenames)
    manager.permissions.set(viewing | extra)
