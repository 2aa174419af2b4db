"""EXPLAIN ANALYZE the hot queries on PostgreSQL over seeded tables (10k reports, 20k
recipients, 30k jobs), in a private schema dropped afterwards: does each use its index?

Run: `.venv/bin/python bench/explain.py` (PostgreSQL at 127.0.0.1:5432, database test).
"""

from __future__ import annotations

import secrets
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from release.core.notify import COUNTED_NOTIFICATIONS  # noqa: E402
from release.core.summaries import SUMMARY_BY_LINK  # noqa: E402
from release.db import migrate  # noqa: E402
from release.db.engine import Database  # noqa: E402
from release.db.models import utcnow  # noqa: E402

# The statements the code runs, with literal values for EXPLAIN.
STATEMENTS = {
    "report page and status: report, recipients, locate attempts by (node, message id)": SUMMARY_BY_LINK.params(
        node="mx1", message_id="m5000"
    ),
    "notification cap, a worker batch of 3 addresses": COUNTED_NOTIFICATIONS.params(
        addresses=["u7@example.com", "u8@example.com", "u9@example.com"], since=utcnow() - timedelta(hours=24)
    ),
}

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"

SEED = [
    """INSERT INTO reports (node, message_id, link_issued_at, state, comment, sender_ip, created_at, updated_at)
       SELECT 'mx1', 'm' || g, now(), 'notified', '', '10.0.0.' || (g % 250),
              now() - (g || ' seconds')::interval, now()
       FROM generate_series(1, 10000) g""",
    """INSERT INTO recipients (report_id, queue, address, state, token_nonce, token_hash, quarantine,
                               expires_at, notified_at, created_at, updated_at)
       SELECT r.id, q, 'u' || (r.id % 500) || '@example.com', 'notified', md5(r.id || 'n' || q),
              md5(r.id || 'h' || q), 'mailquarantine:2', now() + interval '7 days',
              now() - (r.id || ' seconds')::interval, now(), now()
       FROM reports r, generate_series(1, 2) q""",
    """INSERT INTO jobs (kind, ref_id, state, attempts, run_after, created_at)
       SELECT 'notify', g, CASE WHEN g % 100 = 0 THEN 'queued' ELSE 'done' END, 1, now(), now()
       FROM generate_series(1, 30000) g""",
    "ANALYZE",
]

QUERIES = {
    "release page: recipient by token hash": "SELECT * FROM recipients WHERE token_hash = md5('5000h1')",
    "job claim: due queued jobs": (
        "SELECT id FROM jobs WHERE state = 'queued' AND run_after <= now()"
        " ORDER BY run_after, id LIMIT 8 FOR UPDATE SKIP LOCKED"
    ),
    "per-IP report limit": (
        "SELECT count(*) FROM reports WHERE sender_ip = '10.0.0.7' AND created_at > now() - interval '1 hour'"
    ),
}


def main() -> None:
    """Seed a private schema, print each query's plan, drop the schema."""
    schema = "explain_" + secrets.token_hex(4)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        db = Database(f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}")
        migrate.upgrade(db)
        with db.engine.begin() as conn:
            for statement in SEED:
                conn.execute(text(statement))
        with db.engine.connect() as conn:
            compiled = {
                name: str(statement.compile(db.engine, compile_kwargs={"literal_binds": True}))
                for name, statement in STATEMENTS.items()
            }
            for name, query in {**compiled, **QUERIES}.items():
                plan = [row[0] for row in conn.execute(text("EXPLAIN ANALYZE " + query))]
                print(f"-- {name}\n   " + "\n   ".join(plan))
        db.dispose()
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
