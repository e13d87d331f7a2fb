"""The schema stays distributable by merchant: every primary and unique key, and every table,
leads with merchant_id (see docs/scaling.md)."""

from pointguard import db

KEYS = """
SELECT c.relname AS table_name, i.relname AS index_name,
       (SELECT attname FROM pg_attribute
        WHERE attrelid = c.oid AND attnum = x.indkey[0]) AS first_column
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND (x.indisunique OR x.indisprimary)
  AND c.relname <> 'alembic_version'
"""

TABLES = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = current_schema() AND table_name <> 'alembic_version'
"""


async def test_every_key_leads_with_merchant_id(engine):
    async with db.connection(engine) as pg:
        keys = await pg.fetch(KEYS)
        tables = {r["table_name"] for r in await pg.fetch(TABLES)}
    assert keys, "no keys found: is the schema migrated?"
    offenders = [
        f"{k['table_name']}.{k['index_name']}" for k in keys if k["first_column"] != "merchant_id"
    ]
    assert offenders == []
    assert tables == {k["table_name"] for k in keys}, "every table needs a merchant-led key"
