"""Reservations and rentals in the admin: finance managers add them through the services
(every rule of the service comes back on the form), nobody edits or deletes one, viewers
only read."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import AuditEntry, Rental, Reservation
from billing.services.capacity import rental_create, reservation_put
from tests.conftest import utc

pytestmark = pytest.mark.django_db


def url(name: str, *args) -> str:
    return reverse(f"admin:billing_{name}", args=args)


def split(field: str, value: str) -> dict:
    date, _, time = value.partition(" ")
    return {f"{field}_0": date, f"{field}_1": time}


def reservation_form(customer, *, starts_at="2026-10-17 13:00:00", ends_at="", cluster="") -> dict:
    return {"customer": customer.pk, "model_tier": "frontier", "units": "10", "unit_hour_price": "12.50",
            "cluster": cluster, **split("starts_at", starts_at), **split("ends_at", ends_at)}


def rental_form(customer, cluster, *, starts_at="2026-10-01 00:00:00", ends_at="2026-10-11 00:00:00") -> dict:
    return {"customer": customer.pk, "cluster": cluster.pk, "accelerator_hour_price": "4.00",
            **split("starts_at", starts_at), **split("ends_at", ends_at)}


class TestManager:
    def test_adds_a_reservation_version_through_the_service(self, manager, catalog, fleet):
        acme = catalog[0]
        earlier = reservation_put(customer_id="acme", model_tier="frontier", units=5, unit_hour_price=Decimal(1),
                                  starts_at=utc(2026, 10, 1), ends_at=None, cluster=None, actor="user:setup",
                                  as_of=utc(2026, 10, 1))

        response = manager.post(url("reservation_add"), reservation_form(acme))

        assert response.status_code == 302, response.context["adminform"].form.errors
        added = Reservation.objects.get(customer=acme, starts_at=utc(2026, 10, 17, 13))
        earlier.refresh_from_db()
        assert earlier.ends_at == utc(2026, 10, 17, 13)  # closed by reservation_put, as over the API
        assert added.created_by == "user:manager" and added.unit_hour_price == Decimal("12.50")
        assert AuditEntry.objects.filter(action="reservation.put", object_id=str(added.pk)).exists()

    def test_the_service_rules_come_back_on_the_form(self, manager, catalog, fleet):
        acme = catalog[0]

        off_hour = manager.post(url("reservation_add"), reservation_form(acme, starts_at="2026-10-17 13:30:00"))
        retired = manager.post(url("reservation_add"), reservation_form(acme, cluster=fleet["retired"].pk))

        assert off_hour.status_code == 200 and "on the hour" in off_hour.content.decode()
        assert retired.status_code == 200 and "Not in service over the whole term" in retired.content.decode()
        assert not Reservation.objects.filter(customer=acme).exists()

    def test_adds_a_rental_and_an_overlapping_one_is_refused(self, manager, catalog, fleet):
        acme, globex = catalog

        first = manager.post(url("rental_add"), rental_form(globex, fleet["iad-h100-a"]))
        second = manager.post(url("rental_add"),
                              rental_form(acme, fleet["iad-h100-a"], starts_at="2026-10-10 00:00:00"))

        assert first.status_code == 302
        assert second.status_code == 200 and "Overlaps another rental" in second.content.decode()
        assert list(Rental.objects.values_list("customer__customer_id", "accelerator_count")) == [("globex", 8)]

    def test_a_saved_term_only_ends_earlier_and_is_never_deleted(self, manager, catalog, fleet):
        rental = rental_create(customer_id="globex", cluster="iad-h100-a", accelerator_hour_price=Decimal(4),
                               starts_at=utc(2026, 10, 1), ends_at=None, actor="user:setup", as_of=utc(2026, 10, 1))

        ended = manager.post(url("rental_change", rental.pk), {
            **rental_form(catalog[0], fleet["iad-h100-b"], ends_at="2026-10-11 00:00:00")})
        reopened = manager.post(url("rental_change", rental.pk), rental_form(catalog[0], fleet["iad-h100-b"],
                                                                               ends_at=""))
        delete = manager.post(url("rental_delete", rental.pk), {"post": "yes"})

        assert ended.status_code == 302
        assert reopened.status_code == 200 and "never reopened" in reopened.content.decode()
        assert delete.status_code == 403
        rental.refresh_from_db()
        assert (rental.customer.customer_id, rental.cluster.name, rental.ends_at) == (
            "globex", "iad-h100-a", utc(2026, 10, 11))  # the other fields are read-only
        assert AuditEntry.objects.filter(action="rental.end", object_id=str(rental.pk)).exists()

    def test_ending_inside_an_invoiced_period_is_refused_on_the_form(self, manager, catalog, fleet, list_prices):
        from billing.services.invoices import invoice_drafts_refresh, invoice_finalize
        from billing.models import Invoice

        reservation = reservation_put(customer_id="acme", model_tier="frontier", units=1, unit_hour_price=Decimal(1),
                                      starts_at=utc(2026, 10, 1), ends_at=None, cluster=None, actor="user:setup",
                                      as_of=utc(2026, 10, 1))
        invoice_drafts_refresh(customer_ids=["acme"], period=utc(2026, 10, 1).date(), as_of=utc(2026, 11, 2))
        invoice_finalize(invoice_id=Invoice.objects.get(customer__customer_id="acme").pk, actor="test",
                         as_of=utc(2026, 11, 2))

        response = manager.post(url("reservation_change", reservation.pk),
                                reservation_form(catalog[0], ends_at="2026-10-20 00:00:00"))

        assert response.status_code == 200 and "Meets a period already invoiced" in response.content.decode()
        reservation.refresh_from_db()
        assert reservation.ends_at is None


class TestViewer:
    def test_reads_but_cannot_add(self, viewer, catalog, fleet):
        reservation_put(customer_id="acme", model_tier="frontier", units=5, unit_hour_price=Decimal(1),
                        starts_at=utc(2026, 10, 1), ends_at=None, cluster=None, actor="user:setup",
                        as_of=utc(2026, 10, 1))

        listed = viewer.get(url("reservation_changelist"))
        add = viewer.post(url("reservation_add"), reservation_form(catalog[0], starts_at="2026-11-01 00:00:00"))
        end = viewer.post(url("reservation_change", Reservation.objects.get().pk),
                          reservation_form(catalog[0], ends_at="2026-11-01 00:00:00"))
        rentals = viewer.get(url("rental_changelist"))

        assert listed.status_code == 200 and "frontier" in listed.content.decode()
        assert add.status_code == 403 and end.status_code == 403 and rentals.status_code == 200
        assert Reservation.objects.get().ends_at is None
        assert Reservation.objects.count() == 1
