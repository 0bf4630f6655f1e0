"""The finance audit log: every finance action, who did it, before and after."""

from datetime import datetime

from billing.models import AuditEntry


def audit_record(*, actor: str, action: str, obj, before: dict | None, after: dict | None, at: datetime) -> None:
    AuditEntry.objects.create(at=at, actor=actor, action=action, object_type=obj._meta.label,
                              object_id=str(obj.pk), before=before, after=after)
