"""The queries that run on every scheduler run, outbox pass or mail loop use their indexes.

Several of those indexes are partial (``models.SPARSE_TICKET_COLUMNS``, ``event_action``):
a query that the database cannot prove to stay inside such an index falls back to
reading the whole table, which no result shows until the table is large. So each test
records the statements a real call runs and reads their query plans from the database. Runs on
SQLite and on PostgreSQL; PostgreSQL is set to avoid sequential scans, because on
tables this small it would rightly prefer them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deskfactory import make_desk, make_ticket, start_service_levels

from maildesk import models, notify, outbox
from maildesk.scheduler import Scheduler


def recorded(action: Callable[[], object], table: str) -> list[tuple[str, tuple]]:
    """Run ``action`` and return the SELECTs and UPDATEs it ran on ``table``."""
    database = models.database_proxy.obj
    execute_sql = database.execute_sql
    statements: list[tuple[str, tuple]] = []

    def recording(sql, params=None, *args, **kwargs):
        reads = sql.startswith("SELECT") and f'FROM "{table}"' in sql
        if reads or sql.startswith(f'UPDATE "{table}"'):
            statements.append((sql, tuple(params or ())))
        return execute_sql(sql, params, *args, **kwargs)

    database.execute_sql = recording
    try:
        action()
    finally:
        del database.execute_sql
    return statements


def usable(index: str, table: str, sql: str, params: tuple, *, force: bool = True) -> str:
    """Return the plan of a statement when ``index`` is the only index of ``table`` it may use.

    SQLite is held to the index with INDEXED BY, which fails when the index cannot
    serve the query. INDEXED BY is checked before parameters are bound, so a partial
    index that only a parameter's value matches needs ``force=False``. PostgreSQL has
    no such clause, so the other indexes are dropped in a transaction that rolls back,
    and sequential scans are priced out.
    """
    database = models.database_proxy.obj
    if not isinstance(database, models.PostgresqlDatabase) and not force:
        rows = database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return "\n".join(row[-1] for row in rows)
    if not isinstance(database, models.PostgresqlDatabase):
        forced, count = re.subn(rf'FROM "{table}"( AS "t1")?', rf'\g<0> INDEXED BY "{index}"',
                                sql, count=1)
        assert count == 1, sql
        rows = database.execute_sql("EXPLAIN QUERY PLAN " + forced, params).fetchall()
        return "\n".join(row[-1] for row in rows)

    with database.atomic() as transaction:
        for other in database.get_indexes(table):
            if other.name != index and not other.unique:
                database.execute_sql(f'DROP INDEX "{other.name}"')
        database.execute_sql("SET LOCAL enable_seqscan = off")
        rows = database.execute_sql("EXPLAIN " + sql, params).fetchall()
        transaction.rollback()
    return "\n".join(row[0] for row in rows)


def uses(index: str, plan: str) -> bool:
    """Tell whether a plan of either database reads ``index``."""
    return any(f"{marker} {index}" in plan for marker in ("INDEX", "Index Scan using",
                                                          "Index Scan on", "Index Only Scan using"))


@pytest.fixture
def desk(tmp_path: Path, database_url: str):
    return make_desk(tmp_path, database_url)


def test_scheduler_queries_use_due_time_indexes(desk) -> None:
    ticket = make_ticket(20801, "Nie działa VPN", "adam.sikora@example.org")
    start_service_levels(desk, ticket)
    now = datetime(2026, 12, 7, 9, tzinfo=UTC)

    statements = recorded(lambda: Scheduler(desk).run(now), "ticket")

    due_columns = ("first_response_warning_due", "resolution_warning_due",
                   "first_response_due", "resolution_due", "pending_reminder_due",
                   "auto_close_due")
    checked = []
    for sql, params in statements:
        column = next((name for name in due_columns if f'"{name}" <=' in sql), None)
        if column is None:
            continue
        checked.append(column)
        index = f"ticket_{column}"
        plan = usable(index, "ticket", sql, params)
        assert uses(index, plan), f"{column}: {plan}"
    assert sorted(checked) == sorted(due_columns)


def test_outbox_claims_use_state_and_due_time_index(desk) -> None:
    models.Outbox.create(kind="ack", message_id="<ack.1@maildesk.example.com>",
                         sender="helpdesk@example.com", recipients=" zofia@example.org ",
                         raw=b"x")

    statements = recorded(lambda: (outbox.recover_stale_claims(), outbox.claim()), "outbox")

    due = [(sql, params) for sql, params in statements if '"next_attempt_at" <=' in sql]
    assert len(due) == 2
    for sql, params in due:
        if sql.startswith("UPDATE"):
            # SQLite's UPDATE takes no INDEXED BY: plan the SELECT of the rows it changes.
            where = sql.split(" WHERE ", 1)[1]
            sql = f'SELECT "outbox"."id" FROM "outbox" WHERE {where}'
            params = params[-2:]
        plan = usable("outbox_state_next_attempt_at", "outbox", sql, params)
        assert uses("outbox_state_next_attempt_at", plan), plan
    owners = [(sql, params) for sql, params in statements if "DISTINCT" in sql]
    assert len(owners) == 1
    plan = usable("outbox_state_next_attempt_at", "outbox", *owners[0])
    assert uses("outbox_state_next_attempt_at", plan), plan


def test_mail_loop_alert_lookup_uses_partial_action_index(desk) -> None:
    ticket = make_ticket(20802, "Automatyczna odpowiedź", "adam.sikora@example.org")

    statements = recorded(lambda: notify.alert_mail_loop(
        desk, scope="ticket", key="ticket:20802", ticket=ticket, count=12, limit=10), "event")

    lookups = [(sql, params) for sql, params in statements if '"action" =' in sql]
    assert len(lookups) == 1
    plan = usable("event_action", "event", *lookups[0], force=False)
    assert uses("event_action", plan), plan


def test_new_database_has_partial_indexes(desk) -> None:
    database = models.database_proxy.obj

    definitions = {index.name: index.sql for index in database.get_indexes("ticket")}

    for column in models.SPARSE_TICKET_COLUMNS:
        field = models.Ticket._meta.fields[column]
        definition = definitions[f"ticket_{field.column_name}"]
        assert "IS NOT NULL" in definition.upper(), definition
    assert "outbox_created_at" not in {index.name for index in database.get_indexes("outbox")}
