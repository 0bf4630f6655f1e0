"""The wire shape of a usage adjustment (DESIGN.md §6, API.md `POST /usage-adjustments`),
the same over REST and on the usage topic. Pure: no Django, no I/O.

An element of the usage topic is an adjustment when it carries `adjustment_id`. A
replacement states the event's token fields as they should have been, with the same
defaults and rules as an event (totals required, parts 0 unless given, parts never
above their totals); whether the adjusted event exists is the ledger's to say.
"""

from dataclasses import dataclass

from metering.schemas import (
    Catalog, Invalid, _invalid, _parts_checked, _string, _tokens, customer_known, fields_known, shown,
)
from metering.token_classes import FIELDS as TOKEN_FIELDS

ACTIONS = ("void", "replace")
FIELDS = frozenset({"adjustment_id", "customer_id", "event_id", "action", "replacement", "reason"})
REASON_LENGTH_MAX = 500
EXAMPLE_ADJUSTMENT = {
    "adjustment_id": "adj-2026-11-000017", "customer_id": "acme", "event_id": "req_01HZX3K9",
    "action": "replace", "replacement": {"input_tokens": 1200, "cached_input_tokens": 1024, "output_tokens": 380},
    "reason": "gateway double-counted streamed output",
}


@dataclass(frozen=True, slots=True)
class UsageAdjustmentIn:
    """A valid adjustment, normalized: a replacement holds every token field."""

    adjustment_id: str
    customer_id: str
    event_id: str
    action: str
    replacement: dict[str, int] | None
    reason: str

    def payload(self) -> dict:
        """The normalized adjustment as JSON: what repeats are compared by and conflicts keep."""
        return {"adjustment_id": self.adjustment_id, "customer_id": self.customer_id, "event_id": self.event_id,
                "action": self.action, "replacement": self.replacement, "reason": self.reason}


def is_adjustment(element: object) -> bool:
    return isinstance(element, dict) and "adjustment_id" in element


def _replacement(obj: dict, action: str, errors: dict) -> dict[str, int] | None:
    value = obj.get("replacement")
    if action != "replace":
        if value is not None:
            errors["replacement"] = ["replacement_with_void:A void takes no replacement."]
        return None
    if not isinstance(value, dict):
        errors["replacement"] = ["replacement_required:A replacement needs the token fields as they should be."]
        return None
    if unknown := value.keys() - set(TOKEN_FIELDS):
        errors["replacement"] = [f"replacement_field_unknown:Only token fields can be replaced, not "
                                 f"{', '.join(sorted(shown(str(k)) for k in unknown))}."]
        return None
    field_errors: dict[str, list[str]] = {}
    counts = {name: _tokens(value, name, field_errors, default=None if name in ("input_tokens", "output_tokens") else 0)
              for name in TOKEN_FIELDS}
    if not field_errors:
        _parts_checked(counts, field_errors)
    errors.update({f"replacement.{name}": messages for name, messages in field_errors.items()})
    return counts


def adjustment_validate(obj, *, catalog: Catalog) -> UsageAdjustmentIn | Invalid:
    """Check one adjustment's shape; the ledger checks the event it names."""
    if not isinstance(obj, dict):
        return Invalid("not_an_object", {"non_field_errors": ["An adjustment must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    fields_known(obj, FIELDS, errors, of=" of an adjustment")
    adjustment_id = _string(obj, "adjustment_id", 128, errors, required=True)
    customer_id = customer_known(obj, catalog, errors)
    event_id = _string(obj, "event_id", 128, errors, required=True)
    action = obj.get("action")
    if action not in ACTIONS:
        errors["action"] = ["action_invalid:Must be 'void' or 'replace'."]
    replacement = _replacement(obj, action, errors)
    reason = _string(obj, "reason", REASON_LENGTH_MAX, errors, required=True)
    if reason and not reason.strip() and "reason" not in errors:
        errors["reason"] = ["reason_required:Say why the event is corrected."]
    if errors:
        return _invalid(errors)
    return UsageAdjustmentIn(adjustment_id=adjustment_id, customer_id=customer_id, event_id=event_id, action=action,
                             replacement=replacement, reason=reason)
