"""The demo's correction step (DESIGN.md §6): after the period is finalized, a gateway
reports through Kafka that one request was under-counted; the ledger takes the
adjustment in the event's own hour, the invoice stays as issued, finance previews the
re-rating of the period and applies it, and a debit note with its PDF comes out."""

import json
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def correction_show(*, period_start: datetime, consume, as_of: datetime) -> None:
    """`consume(expected)` runs the ledger consumer until it has read `expected` more elements."""
    from django.conf import settings
    from kafka import KafkaProducer

    from billing.documents import credit_note_pdf, debit_note_pdf
    from billing.models import Invoice
    from billing.services.rerating import period_rerate, period_rerate_preview
    from metering.models import UsageAdjustment, UsageEvent
    from metering.projections import rollup_differences
    from metering.token_classes import FIELDS as TOKEN_FIELDS

    invoice = (Invoice.objects.filter(period=period_start.date(), status="finalized")  # a minimum would absorb it
               .exclude(lines__kind="minimum").order_by("-total").first())
    customer_id = invoice.customer.customer_id
    event = (UsageEvent.objects.filter(customer_id=customer_id, occurred_at__gte=period_start, input_tokens__gt=0)
             .order_by("occurred_at", "id").first())
    replacement = {name: getattr(event, name) * 25 for name in TOKEN_FIELDS}  # every part scaled: still valid
    adjustment = {"adjustment_id": f"demo-fix-{event.event_id}", "customer_id": customer_id,
                  "event_id": event.event_id, "action": "replace", "replacement": replacement,
                  "reason": "gateway under-counted a long streamed response"}
    producer = KafkaProducer(bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS, acks="all")
    producer.send(settings.KAFKA_USAGE_TOPIC, key=customer_id.encode(), value=json.dumps(adjustment).encode())
    producer.close()
    consume(1)
    row = UsageAdjustment.objects.get(customer_id=customer_id, adjustment_id=adjustment["adjustment_id"])
    print(f"adjustment {row.adjustment_id} of {customer_id}/{event.event_id} (served {event.occurred_at:%Y-%m-%d %H:%M}"
          f"): input {event.input_tokens:,} → {replacement['input_tokens']:,}, output {event.output_tokens:,} → "
          f"{replacement['output_tokens']:,}; applied in that hour's rollup, invoice {invoice.number} unchanged "
          f"({Invoice.objects.get(pk=invoice.pk).total:.2f})")
    print(f"verify_projections: {'clean' if not rollup_differences(start=None, end=None) else 'DIFFERENCES'}")

    previews = period_rerate_preview(period=period_start.date())
    print(f"\nre-rating preview {period_start:%Y-%m} (admin: Re-ratings → Preview a period): "
          f"{len(previews)} invoice(s) would change")
    for result in previews:
        for d in result.differences:
            print(f"  {result.invoice.number} {d.kind:8} {d.model:12} {d.service_tier:8} {d.token_class:12} "
                  f"billed {d.billed_tokens:>12,} {d.billed_amount:>9.2f}  now {d.tokens:>12,} {d.amount:>9.2f}  "
                  f"{d.difference:>+8.2f}")
        print(f"  {result.invoice.number} difference {result.difference:+.2f}")
    issued = period_rerate(period=period_start.date(), reason=adjustment["reason"], actor="demo-finance", as_of=as_of)
    folder = ROOT / "var" / "demo-invoices"
    for rerating in issued:
        note = rerating.debit_note or rerating.credit_note
        (folder / f"{note.number}.pdf").write_bytes(debit_note_pdf(note) if rerating.debit_note else credit_note_pdf(note))
        print(f"issued {note.number}: {note.amount:.2f} on {rerating.invoice.number}; PDF {folder / note.number}.pdf")
    again = period_rerate(period=period_start.date(), reason="applied twice", actor="demo-finance", as_of=as_of)
    print(f"applied a second time: {len(again)} more document(s)")
