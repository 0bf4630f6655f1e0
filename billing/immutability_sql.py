"""Triggers that keep published prices and the credit ledger immutable in Postgres itself."""

CREATE = """
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

CREATE FUNCTION billing_price_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    book_ids bigint[] := CASE TG_OP WHEN 'INSERT' THEN ARRAY[NEW.price_book_id]
                                    WHEN 'DELETE' THEN ARRAY[OLD.price_book_id]
                                    ELSE ARRAY[OLD.price_book_id, NEW.price_book_id] END;
BEGIN
    IF EXISTS (SELECT 1 FROM billing_pricebook WHERE id = ANY(book_ids) AND status = 'published') THEN
        RAISE EXCEPTION 'prices of a published price book are immutable: % rejected', TG_OP;
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER billing_price_immutable BEFORE INSERT OR UPDATE OR DELETE ON billing_price
    FOR EACH ROW EXECUTE FUNCTION billing_price_guard();

CREATE FUNCTION billing_credit_entry_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the credit ledger is append-only: % rejected', TG_OP
        USING HINT = 'Correct a grant with a new, opposite entry.';
END
$$;
CREATE TRIGGER billing_credit_entry_append_only BEFORE UPDATE OR DELETE ON billing_creditentry
    FOR EACH ROW EXECUTE FUNCTION billing_credit_entry_reject_change();
"""

DROP = """
DROP TRIGGER billing_credit_entry_append_only ON billing_creditentry;
DROP FUNCTION billing_credit_entry_reject_change();
DROP TRIGGER billing_price_immutable ON billing_price;
DROP FUNCTION billing_price_guard();
DROP TRIGGER billing_price_book_immutable ON billing_pricebook;
DROP FUNCTION billing_price_book_guard();
"""
