"""Postgres triggers that keep billing's facts immutable whatever the client: published
price books and their prices, issued invoices and their lines, and the append-only
tables (credit ledger, billed usage, credit notes, audit log)."""

GENERIC_CREATE = """
-- Rows of a child table (price lines, invoice lines) may change only while their parent
-- is still editable. Arguments: parent table, foreign key column, the editable status.
CREATE FUNCTION billing_child_of_frozen_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent_ids bigint[] := ARRAY(
        SELECT (to_jsonb(r) ->> TG_ARGV[1])::bigint
        FROM (SELECT NEW AS r WHERE TG_OP <> 'DELETE' UNION ALL SELECT OLD WHERE TG_OP <> 'INSERT') AS rows);
    frozen boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE id = ANY($1) AND status <> %L)', TG_ARGV[0], TG_ARGV[2])
        INTO frozen USING parent_ids;
    IF frozen THEN
        RAISE EXCEPTION '% of a % that is no longer % are immutable: % rejected',
            TG_TABLE_NAME, TG_ARGV[0], TG_ARGV[2], TG_OP;
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;

CREATE FUNCTION billing_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
        USING HINT = 'Correct with a new entry.';
END
$$;
"""

PRICING_CREATE = GENERIC_CREATE + """
CREATE FUNCTION billing_price_book_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'published' THEN
        RAISE EXCEPTION 'price book % is published and immutable: % rejected', OLD.id, TG_OP
            USING HINT = 'Copy it into a new draft version and publish that.';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER billing_price_book_immutable BEFORE UPDATE OR DELETE ON billing_pricebook
    FOR EACH ROW EXECUTE FUNCTION billing_price_book_guard();
CREATE TRIGGER billing_price_immutable BEFORE INSERT OR UPDATE OR DELETE ON billing_price
    FOR EACH ROW EXECUTE FUNCTION billing_child_of_frozen_guard('billing_pricebook', 'price_book_id', 'draft');
CREATE TRIGGER billing_credit_entry_append_only BEFORE UPDATE OR DELETE ON billing_creditentry
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
"""

PRICING_DROP = """
DROP TRIGGER billing_credit_entry_append_only ON billing_creditentry;
DROP TRIGGER billing_price_immutable ON billing_price;
DROP TRIGGER billing_price_book_immutable ON billing_pricebook;
DROP FUNCTION billing_price_book_guard();
DROP FUNCTION billing_append_only();
DROP FUNCTION billing_child_of_frozen_guard();
"""

INVOICING_CREATE = """
CREATE FUNCTION billing_invoice_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'draft' THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.status = 'finalized' AND NEW.status IN ('paid', 'void')
       AND (NEW.customer_id, NEW.period, NEW.number, NEW.currency, NEW.subtotal, NEW.total, NEW.computed_at,
            NEW.issued_at, NEW.due_at)
           IS NOT DISTINCT FROM
           (OLD.customer_id, OLD.period, OLD.number, OLD.currency, OLD.subtotal, OLD.total, OLD.computed_at,
            OLD.issued_at, OLD.due_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'invoice % is % and immutable: % rejected', OLD.number, OLD.status, TG_OP
        USING HINT = 'Only finalized -> paid or void is allowed; correct it with a credit note.';
END
$$;
CREATE TRIGGER billing_invoice_immutable BEFORE UPDATE OR DELETE ON billing_invoice
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_guard();
CREATE TRIGGER billing_invoice_line_immutable BEFORE INSERT OR UPDATE OR DELETE ON billing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION billing_child_of_frozen_guard('billing_invoice', 'invoice_id', 'draft');
CREATE TRIGGER billing_billedusage_append_only BEFORE UPDATE OR DELETE ON billing_billedusage
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_creditnote_append_only BEFORE UPDATE OR DELETE ON billing_creditnote
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_auditentry_append_only BEFORE UPDATE OR DELETE ON billing_auditentry
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
"""

INVOICING_DROP = """
DROP TRIGGER billing_auditentry_append_only ON billing_auditentry;
DROP TRIGGER billing_creditnote_append_only ON billing_creditnote;
DROP TRIGGER billing_billedusage_append_only ON billing_billedusage;
DROP TRIGGER billing_invoice_line_immutable ON billing_invoiceline;
DROP TRIGGER billing_invoice_immutable ON billing_invoice;
DROP FUNCTION billing_invoice_guard();
"""

# Migration 0009: re-ratings and debit notes are append-only, and an issued invoice's
# `adjustments_through` is as immutable as its total.
_INVOICE_GUARD = INVOICING_CREATE.split("CREATE TRIGGER")[0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
CORRECTIONS_CREATE = _INVOICE_GUARD.replace("NEW.due_at)", "NEW.due_at, NEW.adjustments_through)").replace(
    "OLD.due_at)", "OLD.due_at, OLD.adjustments_through)").replace(
    "correct it with a credit note", "correct it with a credit or debit note") + """
CREATE TRIGGER billing_debitnote_append_only BEFORE UPDATE OR DELETE ON billing_debitnote
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_rerating_append_only BEFORE UPDATE OR DELETE ON billing_rerating
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
"""

CORRECTIONS_DROP = """
DROP TRIGGER billing_rerating_append_only ON billing_rerating;
DROP TRIGGER billing_debitnote_append_only ON billing_debitnote;
""" + _INVOICE_GUARD
