"""Reservations and rentals (capacity sold by the hour).

- A reservation version and a rental are added through `reservation_put` and
  `rental_create`, as over the API: the form calls the service when it validates, so every
  rule the service keeps (on the hour, cluster in service, no overlap, nothing invoiced
  changed) comes back as a form error. The admin page's transaction holds the write.
- A saved term is never deleted, and only its end can be changed, to an earlier hour,
  through `reservation_end` / `rental_end` (ending an open term, typically); anything
  else is a new version from an hour on.
- Finance managers add and end terms (billing.add_/change_reservation and _rental);
  viewers only read.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.admin.common import actor_of
from billing.models import Rental, Reservation
from billing.services.capacity import rental_create, rental_end, reservation_end, reservation_put
from config.api import DomainError


class _ServiceForm(forms.ModelForm):
    """Adds, or ends, through a service in clean(); `created` is what it wrote."""

    request = None
    created = None

    def _create(self, cleaned: dict, actor: str):
        raise NotImplementedError

    def _end(self, ends_at, actor: str):
        raise NotImplementedError

    def clean(self):
        cleaned = super().clean()
        adding = self.instance._state.adding
        if self.errors or not (adding or "ends_at" in self.changed_data):
            return cleaned
        if not adding and cleaned.get("ends_at") is None:
            self.add_error("ends_at", "A term is ended, never reopened: add a new version or rental instead.")
            return cleaned
        try:
            if adding:
                self.created = self._create(cleaned, actor_of(self.request))
            else:
                self.created = self._end(cleaned["ends_at"], actor_of(self.request))
        except DomainError as exc:
            fields = {k: v for k, v in (exc.errors or {}).items() if k in self.fields}
            if not fields:
                raise ValidationError(exc.detail) from exc
            for field, messages in fields.items():
                self.add_error(field, messages)
        return cleaned

    def validate_constraints(self):
        # The service checked the overlaps (and wrote the row); Postgres checks them again.
        pass


class ReservationForm(_ServiceForm):
    class Meta:
        model = Reservation
        fields = ["customer", "model_tier", "units", "unit_hour_price", "starts_at", "ends_at", "cluster"]

    def _create(self, cleaned, actor):
        return reservation_put(
            customer_id=cleaned["customer"].customer_id, model_tier=cleaned["model_tier"], units=cleaned["units"],
            unit_hour_price=cleaned["unit_hour_price"], starts_at=cleaned["starts_at"], ends_at=cleaned.get("ends_at"),
            cluster=cleaned["cluster"].name if cleaned.get("cluster") else None, actor=actor, as_of=timezone.now())

    def _end(self, ends_at, actor):
        return reservation_end(reservation_id=self.instance.pk, ends_at=ends_at, actor=actor, as_of=timezone.now())


class RentalForm(_ServiceForm):
    class Meta:
        model = Rental
        fields = ["customer", "cluster", "accelerator_hour_price", "starts_at", "ends_at"]

    def _create(self, cleaned, actor):
        return rental_create(
            customer_id=cleaned["customer"].customer_id, cluster=cleaned["cluster"].name,
            accelerator_hour_price=cleaned["accelerator_hour_price"], starts_at=cleaned["starts_at"],
            ends_at=cleaned.get("ends_at"), actor=actor, as_of=timezone.now())

    def _end(self, ends_at, actor):
        return rental_end(rental_id=self.instance.pk, ends_at=ends_at, actor=actor, as_of=timezone.now())


class _CapacityAdmin(admin.ModelAdmin):
    readonly_fields = ["created_by", "created_at"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        return [*(f for f in self.form._meta.fields if f != "ends_at"), *self.readonly_fields]

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return  # ended by the service when the form validated, or unchanged
        created = form.created  # written by the service when the form validated
        obj.pk, obj.created_at, obj.created_by = created.pk, created.created_at, created.created_by
        obj._state.adding = False


@admin.register(Reservation)
class ReservationAdmin(_CapacityAdmin):
    form = ReservationForm
    list_display = ["customer", "model_tier", "units", "unit_hour_price", "starts_at", "ends_at", "cluster",
                    "created_by", "created_at"]
    list_filter = ["model_tier", "customer"]
    list_select_related = ["customer", "cluster"]
    search_fields = ["customer__customer_id", "customer__name", "model_tier"]
    date_hierarchy = "starts_at"


@admin.register(Rental)
class RentalAdmin(_CapacityAdmin):
    form = RentalForm
    list_display = ["cluster", "customer", "accelerator_count", "accelerator_hour_price", "starts_at", "ends_at",
                    "created_by", "created_at"]
    list_filter = ["cluster", "customer"]
    list_select_related = ["customer", "cluster"]
    search_fields = ["customer__customer_id", "cluster__name"]
    date_hierarchy = "starts_at"
    readonly_fields = ["accelerator_count", "created_by", "created_at"]
