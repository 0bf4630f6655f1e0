"""Fixtures of the metering tests."""

import pytest
from django.db import connection

POISON_PREFIX = "poison-"


@pytest.fixture
def postgres_refuses(transactional_db):
    """A fault in the test database: Postgres refuses to claim any event whose event_id
    starts with POISON_PREFIX: an element that passes the validator and still fails to
    write, as one hitting a constraint or trigger added in production would. Dropped after the test: the DDL is committed, the test being transactional."""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            CREATE OR REPLACE FUNCTION test_poison_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.event_id LIKE '{POISON_PREFIX}%' THEN
                    RAISE EXCEPTION 'test fault: event % refused', NEW.event_id;
                END IF;
                RETURN NEW;
            END $$;
            DROP TRIGGER IF EXISTS test_poison ON metering_usage_event_key;
            CREATE TRIGGER test_poison BEFORE INSERT ON metering_usage_event_key
                FOR EACH ROW EXECUTE FUNCTION test_poison_refuse();
        """)
    yield POISON_PREFIX
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS test_poison ON metering_usage_event_key; "
                       "DROP FUNCTION IF EXISTS test_poison_refuse()")
