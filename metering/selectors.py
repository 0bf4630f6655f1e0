"""Reads of metering data, for this app's APIs and for other apps."""

from metering.models import CatalogModel, Customer
from metering.schemas import Catalog


def catalog_current() -> Catalog:
    """What events may name right now."""
    return Catalog(
        customers=frozenset(Customer.objects.values_list("customer_id", flat=True)),
        models=frozenset(CatalogModel.objects.values_list("name", flat=True)),
    )
