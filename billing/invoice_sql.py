"""Triggers that keep issued invoices, their lines, billed usage, credit notes and the
audit log immutable in Postgres itself."""

CREATE = """
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

CREATE FUNCTION billing_invoice_line_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    invoice_ids bigint[] := CASE TG_OP WHEN 'INSERT' THEN ARRAY[NEW.invoice_id]
                                       WHEN 'DELETE' THEN ARRAY[OLD.invoice_id]
                                       ELSE ARRAY[OLD.invoice_id, NEW.invoice_id] END;
BEGIN
    IF EXISTS (SELECT 1 FROM billing_invoice WHERE id = ANY(invoice_ids) AND status <> 'draft') THEN
        RAISE EXCEPTION 'lines of an issued invoice are immutable: % rejected', TG_OP;
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER billing_invoice_line_immutable BEFORE INSERT OR UPDATE OR DELETE ON billing_invoiceline
    FOR EACH ROW EXECUTE FUNCTION billing_invoice_line_guard();

CREATE FUNCTION billing_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER billing_billedusage_append_only BEFORE UPDATE OR DELETE ON billing_billedusage
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_creditnote_append_only BEFORE UPDATE OR DELETE ON billing_creditnote
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
CREATE TRIGGER billing_auditentry_append_only BEFORE UPDATE OR DELETE ON billing_auditentry
    FOR EACH ROW EXECUTE FUNCTION billing_append_only();
"""

DROP = """
DROP TRIGGER billing_auditentry_append_only ON billing_auditentry;
DROP TRIGGER billing_creditnote_append_only ON billing_creditnote;
DROP TRIGGER billing_billedusage_append_only ON billing_billedusage;
DROP FUNCTION billing_append_only();
DROP TRIGGER billing_invoice_line_immutable ON billing_invoiceline;
DROP FUNCTION billing_invoice_line_guard();
DROP TRIGGER billing_invoice_immutable ON billing_invoice;
DROP FUNCTION billing_invoice_guard();
"""
