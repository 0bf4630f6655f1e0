"""Documents a customer receives: the invoice as PDF and CSV, and the credit and debit
notes against it as PDF.

They show what is stored and compute nothing new. Every amount is a stored `Decimal`
printed with two decimals (unit prices with up to six); the only arithmetic is summing
stored amounts (credits applied, credit and debit notes issued, the amount remaining
after them). That keeps the CSV's amount column summing exactly to `Invoice.total`. A
note issued by a re-rating shows the comparison the re-rating stored, line by line, as
it was stored. PDFs are built with `invariant=True`, so the same document always renders
to the same bytes.
"""

import csv
import io
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from xml.sax.saxutils import escape

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from reportlab.lib import colors
from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.rating.money import money_text as money
from billing.rating.money import unit_price_text
from billing.models import CreditNote, DebitNote, Invoice, InvoiceLine, Rerating
from metering.models import Customer

CSV_HEADER = ("position", "kind", "description", "model", "service_tier", "token_class", "tokens", "unit_price",
              "amount", "usage_period", "usage_start", "usage_end", "currency")
USAGE_KINDS = (InvoiceLine.Kind.USAGE, InvoiceLine.Kind.LATE_USAGE)
WATERMARKS = {Invoice.Status.DRAFT: "DRAFT", Invoice.Status.VOID: "VOID"}
STYLES = getSampleStyleSheet()
STYLES.add(ParagraphStyle("Cell", parent=STYLES["Normal"], fontSize=9, leading=11))
STYLES.add(ParagraphStyle("DocumentTitle", parent=STYLES["Title"], spaceBefore=8 * mm, spaceAfter=6 * mm))
MARGIN = 18 * mm
LINE_COLUMN_WIDTHS = (66 * mm, 28 * mm, 28 * mm, 27 * mm, 30 * mm)
NOTE_COLUMN_WIDTHS = (35 * mm, 25 * mm, 25 * mm, 94 * mm)
RERATING_COLUMN_WIDTHS = (64 * mm, 22 * mm, 22 * mm, 23 * mm, 23 * mm, 25 * mm)
RERATING_KIND_LABELS = {"capacity": "Capacity (reservations and rentals)", "discount": "Discount",
                        "minimum": "Monthly minimum commitment"}
GRID = [("FONT", (0, 0), (-1, -1), "Helvetica", 9), ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 9),
        ("LINEBELOW", (0, 0), (-1, 0), 0.75, colors.black), ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("ALIGN", (1, 0), (-1, -1), "RIGHT")]


def invoice_pdf(invoice: Invoice) -> bytes:
    lines = list(invoice.lines.order_by("position"))
    credit_notes = list(invoice.credit_notes.order_by("created_at", "number"))
    debit_notes = list(invoice.debit_notes.order_by("created_at", "number"))
    label = f"Invoice {invoice.number}" if invoice.number else "DRAFT invoice"
    story = [
        _parties(invoice.customer), _paragraph(label, "DocumentTitle"), _facts(_invoice_facts(invoice)),
        Spacer(1, 6 * mm), _lines_table(lines, currency=invoice.currency), Spacer(1, 4 * mm),
        _totals(invoice, lines, credit_notes, debit_notes),
        *_notes_section(credit_notes, kind="Credit note"), *_notes_section(debit_notes, kind="Debit note"),
        Spacer(1, 6 * mm), _paragraph(_invoice_terms(invoice), "Normal"),
    ]
    return _render(story, title=label, watermark=WATERMARKS.get(invoice.status))


def credit_note_pdf(note: CreditNote) -> bytes:
    return _note_pdf(note, kind="Credit note", invoice_label="Invoice credited", amount_label="Amount credited")


def debit_note_pdf(note: DebitNote) -> bytes:
    return _note_pdf(note, kind="Debit note", invoice_label="Invoice debited", amount_label="Amount debited")


def note_rerating(note: CreditNote | DebitNote) -> Rerating | None:
    """The re-rating that issued the note; None for a note issued by hand."""
    try:
        return note.rerating
    except ObjectDoesNotExist:
        return None


def invoice_csv(invoice: Invoice) -> str:
    """One row per line, in position order; the amount column sums to `invoice.total`."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for line in invoice.lines.order_by("position"):
        tokens = line.tokens if line.kind in USAGE_KINDS else ""
        writer.writerow([line.position, line.kind, line.description, line.model, line.service_tier, line.token_class,
                         tokens, unit_price_text(line.unit_price) or "", money(line.amount), line.usage_period,
                         _instant(line.usage_start), _instant(line.usage_end), invoice.currency])
    return out.getvalue()


def _invoice_facts(invoice: Invoice) -> list[tuple[str, str]]:
    return [("Invoice number", invoice.number or "DRAFT (not issued)"), ("Period", f"{invoice.period:%Y-%m}"),
            ("Issue date", _date(invoice.issued_at)), ("Due date", _date(invoice.due_at)),
            ("Status", invoice.get_status_display()), ("Currency", invoice.currency)]


def _invoice_terms(invoice: Invoice) -> str:
    if invoice.status == Invoice.Status.DRAFT:
        return "Draft: the figures may change until the invoice is issued. Not payable."
    if invoice.status == Invoice.Status.VOID:
        return f"This invoice was voided on {_date(invoice.voided_at)} and is not payable."
    if invoice.status == Invoice.Status.PAID:
        return f"Paid on {_date(invoice.paid_at)}. Thank you."
    return (f"Payment terms: {settings.BILLING_PAYMENT_TERMS_DAYS} days. Please pay by {_date(invoice.due_at)} "
            f"and quote {invoice.number} with your payment.")


def _lines_table(lines: list[InvoiceLine], *, currency: str) -> Table:
    header = ["Description", "Usage period", "Tokens", "Unit price / 1M", f"Amount ({currency})"]
    rows = [[_paragraph(line.description, "Cell"), _paragraph(usage_dates_text(line), "Cell"),
             f"{line.tokens:,}" if line.kind in USAGE_KINDS else "",
             _unit_price_cell(line), _amount(line.amount)] for line in lines]
    # Rules, not filled rows, so a watermark drawn under the page content stays visible.
    style = [*GRID, ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey)]
    return Table([header, *rows], colWidths=LINE_COLUMN_WIDTHS, repeatRows=1, style=TableStyle(style))


def _note_pdf(note: CreditNote | DebitNote, *, kind: str, invoice_label: str, amount_label: str) -> bytes:
    """A note against an invoice: what it is, the invoice, its amount and reason, and the
    re-rating's comparison when a re-rating issued it."""
    invoice, title = note.invoice, f"{kind} {note.number}"
    facts = [(f"{kind} number", note.number), ("Date", _date(note.created_at)),
             (invoice_label, f"{invoice.number} (period {invoice.period:%Y-%m})"), ("Currency", invoice.currency),
             (amount_label, _amount(note.amount))]
    story = [_parties(invoice.customer), _paragraph(title, "DocumentTitle"), _facts(facts), Spacer(1, 6 * mm),
             _paragraph("Reason", "Heading4"), _paragraph(note.reason, "Normal")]
    rerating = note_rerating(note)
    if rerating is not None:
        story += _rerating_section(rerating, invoice=invoice, amount_label=amount_label, amount=note.amount)
    return _render(story, title=title, watermark=None)


def _rerating_section(rerating: Rerating, *, invoice: Invoice, amount_label: str, amount: Decimal) -> list[Flowable]:
    """The re-rating's stored lines: what was billed, what the period rates at now, and the
    difference, each as stored."""
    currency = invoice.currency
    header = ["Description", "Tokens\nbilled", "Tokens\nnow", f"Billed\n({currency})", f"Now\n({currency})",
              f"Difference\n({currency})"]
    rows = [[_paragraph(rerating_line_text(line), "Cell"), _tokens(line, "billed_tokens"), _tokens(line, "tokens"),
             _stored_amount(line.get("billed_amount")), _stored_amount(line.get("amount")),
             _stored_amount(line.get("difference"))] for line in rerating.lines]
    style = [*GRID, ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey)]
    table = Table([header, *rows], colWidths=RERATING_COLUMN_WIDTHS, repeatRows=1, style=TableStyle(style))
    summary = Table([("Difference (now − billed)", _amount(rerating.difference)), (amount_label, _amount(amount))],
                    colWidths=(55 * mm, 30 * mm), hAlign="RIGHT",
                    style=TableStyle([("FONT", (0, 0), (-1, -1), "Helvetica", 10), ("ALIGN", (1, 0), (1, -1), "RIGHT"),
                                      ("FONT", (0, 1), (-1, 1), "Helvetica-Bold", 10),
                                      ("LINEABOVE", (0, 1), (-1, 1), 0.75, colors.black)]))
    return [Spacer(1, 6 * mm), _paragraph(f"Re-rating of invoice {invoice.number}", "Heading4"), table,
            Spacer(1, 4 * mm), summary]


def rerating_line_text(line: dict) -> str:
    """`model service_tier token_class`, and the usage's period on late usage; a discount
    or minimum line by its kind."""
    key = " ".join(part for part in (line.get("model"), line.get("service_tier"), line.get("token_class")) if part)
    text = key or RERATING_KIND_LABELS.get(line.get("kind"), line.get("kind") or "")
    return f"{text} (usage of {line['period']})" if line.get("period") else text


def _tokens(line: dict, name: str) -> str:
    tokens = line.get(name)
    return f"{tokens:,}" if tokens is not None and line.get("kind") in USAGE_KINDS else ""


def _stored_amount(text: str | None) -> str:
    """An amount the re-rating stored as text ("12.34"), printed like every other."""
    return "" if text is None else _amount(Decimal(text))


def _totals(invoice: Invoice, lines: list[InvoiceLine], credit_notes: list[CreditNote],
            debit_notes: list[DebitNote]) -> Table:
    credits = _sum(line.amount for line in lines if line.kind == InvoiceLine.Kind.CREDITS)
    rows = [("Subtotal", invoice.subtotal), ("Prepaid credits applied", credits),
            (f"Total ({invoice.currency})", invoice.total)]
    credited, debited = _sum(note.amount for note in credit_notes), _sum(note.amount for note in debit_notes)
    if credit_notes:
        rows.append(("Credit notes issued", -credited))
    if debit_notes:
        rows.append(("Debit notes issued", debited))
    if credit_notes or debit_notes:
        rows.append(("Amount remaining", invoice.total - credited + debited))
    style = [("FONT", (0, 0), (-1, -1), "Helvetica", 10), ("ALIGN", (1, 0), (1, -1), "RIGHT"),
             ("FONT", (0, 2), (-1, 2), "Helvetica-Bold", 10), ("LINEABOVE", (0, 2), (-1, 2), 0.75, colors.black)]
    return Table([(label, _amount(amount)) for label, amount in rows], colWidths=(55 * mm, 30 * mm), hAlign="RIGHT",
                 style=TableStyle(style))


def _notes_section(notes: list[CreditNote] | list[DebitNote], *, kind: str) -> list[Flowable]:
    if not notes:
        return []
    rows = [(note.number, _date(note.created_at), _amount(note.amount), _paragraph(note.reason, "Cell"))
            for note in notes]
    style = [*GRID, ("ALIGN", (3, 0), (3, -1), "LEFT")]
    table = Table([(kind, "Date", "Amount", "Reason"), *rows], colWidths=NOTE_COLUMN_WIDTHS, hAlign="LEFT",
                  repeatRows=1, style=TableStyle(style))
    return [Spacer(1, 6 * mm), _paragraph(f"{kind}s issued against this invoice", "Heading4"), table]


def _parties(customer: Customer) -> Table:
    seller = settings.SELLER
    seller_block = _block([seller["name"], seller["address"], seller["email"]])
    customer_block = _block(["Bill to", customer.name, f"Customer ID: {customer.customer_id}", customer.email])
    return Table([[seller_block, customer_block]], colWidths=("50%", "50%"),
                 style=TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (0, 0), 0)]))


def _facts(rows: list[tuple[str, str]]) -> Table:
    style = [("FONT", (0, 0), (-1, -1), "Helvetica", 10), ("FONT", (0, 0), (0, -1), "Helvetica-Bold", 10),
             ("LEFTPADDING", (0, 0), (0, -1), 0)]
    return Table(rows, colWidths=(45 * mm, None), hAlign="LEFT", style=TableStyle(style))


def _render(story: list[Flowable], *, title: str, watermark: str | None) -> bytes:
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=LETTER, title=title, author=settings.SELLER["name"],
                                 leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN, bottomMargin=MARGIN,
                                 invariant=True)
    decorate = _page_decoration(title=title, watermark=watermark)
    document.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


def _page_decoration(*, title: str, watermark: str | None) -> Callable[[Canvas, SimpleDocTemplate], None]:
    """Drawn on every page before its content: the watermark under it, the footer below it."""
    footer = f"{settings.SELLER['name']} · {settings.SELLER['email']} · {title}"

    def decorate(canvas: Canvas, document: SimpleDocTemplate) -> None:
        width, height = document.pagesize
        canvas.saveState()
        if watermark:
            canvas.setFillColor(colors.HexColor("#e6e6e6"))
            canvas.setFont("Helvetica-Bold", 110)
            canvas.translate(width / 2, height / 2)
            canvas.rotate(45)
            canvas.drawCentredString(0, 0, watermark)
        canvas.restoreState()
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.grey)
        canvas.drawString(MARGIN, MARGIN / 2, footer)
        canvas.drawRightString(width - MARGIN, MARGIN / 2, f"Page {document.page}")
        canvas.restoreState()

    return decorate


def _block(texts: list[str]) -> Paragraph:
    """Stacked lines of plain text (a blank one skipped), the first in bold."""
    first, *rest = [escape(text).replace("\n", "<br/>") for text in texts if text]
    return Paragraph("<br/>".join([f"<b>{first}</b>", *rest]), STYLES["Normal"])


def _paragraph(text: str, style: str) -> Paragraph:
    """Plain text, escaped: names and reasons may hold '&' or '<', which Paragraph parses."""
    return Paragraph(escape(text), STYLES[style])


def _amount(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _sum(amounts: Iterable[Decimal]) -> Decimal:
    return sum(amounts, Decimal(0))


def _unit_price_cell(line: InvoiceLine) -> str:
    """Per 1M tokens, as the column says; a capacity line's price is per unit-hour."""
    price = unit_price_text(line.unit_price) or ""
    return f"{price} / h" if price and line.kind == InvoiceLine.Kind.CAPACITY else price


def usage_dates_text(line: InvoiceLine) -> str:
    """The days a usage line covers, both inclusive ("2026-10-01 – 2026-10-14"); its end is
    exclusive, so the last day is the one holding the instant before it."""
    if line.usage_start is None or line.usage_end is None:
        return line.usage_period
    first, last = _date(line.usage_start), _date(line.usage_end - timedelta(microseconds=1))
    return first if first == last else f"{first} – {last}"


def _instant(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat()


def _date(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).date().isoformat()
