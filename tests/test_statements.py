"""Cached statements read and write the same rows as peewee's own queries."""

from __future__ import annotations

from datetime import datetime

import peewee as pw
import pytest
from deskfactory import record_sql

from maildesk import models, statements
from maildesk.errors import ConfigError, TemporaryError


@pytest.fixture
def database(database_url: str):
    database = models.open_database(database_url)
    yield database
    database.close()


def test_statements_insert_applies_defaults(database) -> None:
    contact = statements.insert(models.Contact, address="zofia@example.org", name="Zofia")

    stored = models.Contact.get_by_id(contact.id)

    assert contact.id is not None
    assert stored.address == "zofia@example.org"
    assert stored.name == "Zofia"
    assert isinstance(stored.created_at, datetime)
    assert stored.created_at == contact.created_at
    assert stored.language is None


def test_statements_insert_instance_keeps_what_was_set_before(database) -> None:
    contact = statements.insert(models.Contact, address="zofia@example.org")
    ticket = models.Ticket(subject="VPN", requester=contact)
    ticket.priority = 2
    ticket.first_response_due = datetime(2026, 12, 7, 9, 30)

    saved = statements.insert_instance(ticket)
    stored = models.Ticket.get_by_id(saved.id)

    assert saved is ticket
    assert (stored.priority, stored.first_response_due) == (2, datetime(2026, 12, 7, 9, 30))
    assert stored.reply_token == ticket.reply_token
    assert stored.resolution_due is None


def test_statements_insert_unless_taken(database) -> None:
    with models.database_proxy.atomic():
        first = statements.insert_unless_taken(models.Contact, address="jan@example.org",
                                               name="Jan")
        duplicate = statements.insert_unless_taken(
            models.Contact, address="jan@example.org", name="Inny Jan")
        # The skipped row left the transaction usable, on PostgreSQL too.
        other = statements.insert_unless_taken(models.Contact, address="ewa@example.org")

    assert first is not None
    assert duplicate is None
    assert other is not None
    assert other.id != first.id
    assert models.Contact.get_by_id(first.id).name == "Jan"
    assert models.Contact.select().count() == 2


def test_statements_insert_converts_foreign_keys_and_blobs(database) -> None:
    contact = statements.insert(models.Contact, address="jan@example.org")
    ticket = statements.insert(models.Ticket, subject="Drukarka", requester=contact)
    outbox = statements.insert(models.Outbox, ticket=ticket, kind="ack",
                               message_id="<ack.1@maildesk.example.com>",
                               sender="helpdesk@example.com", recipients=" jan@example.org ",
                               raw=b"\x00\xffraw")

    stored = models.Outbox.get_by_id(outbox.id)

    assert stored.ticket_id == ticket.id
    assert bytes(stored.raw) == b"\x00\xffraw"
    assert stored.automatic is True
    assert models.Ticket.get_by_id(ticket.id).requester.address == "jan@example.org"
    assert ticket.requester.address == "jan@example.org"


def test_statements_insert_ids_increase(database) -> None:
    first = statements.insert(models.Event, actor="maildesk", action="a")
    second = statements.insert(models.Event, actor="maildesk", action="b")

    assert second.id == first.id + 1
    assert models.Event.get_by_id(second.id).action == "b"


def test_statements_insert_raises_integrity_error(database) -> None:
    statements.insert(models.ProcessedMessage, dedupe_key="k", raw_sha256="0" * 64,
                      source="test", outcome="create")

    with pytest.raises(pw.IntegrityError), models.database_proxy.atomic():
        statements.insert(models.ProcessedMessage, dedupe_key="k", raw_sha256="1" * 64,
                          source="test", outcome="create")


def test_statements_first_matches_peewee(database) -> None:
    statements.insert(models.Contact, address="zofia@example.org", name="Zofia",
                      language="pl", bounce_reason="550")

    found = statements.first(models.Contact, address="zofia@example.org")
    expected = models.Contact.get(models.Contact.address == "zofia@example.org")

    assert found is not None
    assert found.__data__ == expected.__data__
    assert statements.first(models.Contact, address="nobody@example.org") is None


def test_statements_first_with_several_fields(database) -> None:
    contact = statements.insert(models.Contact, address="jan@example.org")
    ticket = statements.insert(models.Ticket, subject="VPN", requester=contact, status="open")

    assert statements.first(models.Ticket, id=ticket.id, status="open").subject == "VPN"
    assert statements.first(models.Ticket, id=ticket.id, status="closed") is None


def test_statements_exists(database) -> None:
    statements.insert(models.ProcessedMessage, dedupe_key="<m1@example.org>",
                      raw_sha256="0" * 64, source="test", outcome="create")

    assert statements.exists(models.ProcessedMessage, dedupe_key="<m1@example.org>")
    assert not statements.exists(models.ProcessedMessage, dedupe_key="<m2@example.org>")


def test_statements_update_sets_only_named_fields(database) -> None:
    contact = statements.insert(models.Contact, address="jan@example.org", name="Jan")
    other = statements.insert(models.Contact, address="zofia@example.org", name="Zofia")

    changed = statements.update(models.Contact, contact.id, language="pl", name="Jan K.")

    stored = models.Contact.get_by_id(contact.id)
    assert changed == 1
    assert stored.language == "pl"
    assert stored.name == "Jan K."
    assert stored.address == "jan@example.org"
    assert models.Contact.get_by_id(other.id).name == "Zofia"
    assert statements.update(models.Contact, 999_999, name="x") == 0


RECENT_EVENTS = statements.Prepared(
    lambda action, since: models.Event.select(models.Event.actor)
    .where(models.Event.action == action, models.Event.created_at >= since)
    .order_by(models.Event.id))


def test_statements_prepared_query_matches_peewee(database) -> None:
    statements.insert(models.Event, actor="jan", action="created")
    statements.insert(models.Event, actor="zofia", action="created")
    statements.insert(models.Event, actor="maildesk", action="ignored")
    since = models.utcnow().replace(year=2000)

    rows = RECENT_EVENTS.rows("created", since)
    later = RECENT_EVENTS.rows("created", models.utcnow().replace(year=2100))

    assert rows == [("jan",), ("zofia",)]
    assert later == []
    assert RECENT_EVENTS.scalar("ignored", since) == "maildesk"
    assert RECENT_EVENTS.scalar("nothing", since) is None


def test_statements_prepared_rejects_changed_values(database) -> None:
    query = statements.Prepared(
        lambda text: models.Event.select(models.Event.id).where(models.Event.detail.contains(text)))

    with pytest.raises(ValueError, match="do not reach its SQL unchanged"):
        query.rows("x")


def _setting(database) -> str:
    if models.is_postgresql(database):
        return database.execute_sql("SHOW synchronous_commit").fetchone()[0]
    return str(database.execute_sql("PRAGMA synchronous").fetchone()[0])


def test_deferred_durability_flushes_at_end(database, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _setting(database)
    executed = record_sql(database, monkeypatch)

    with models.deferred_durability():
        inside = _setting(database)
        statements.insert(models.Event, actor="maildesk", action="created")
        flushed_inside = [sql for sql in executed if "schema_version" in sql]

    after = _setting(database)
    assert flushed_inside == []
    assert [sql for sql in executed if "schema_version" in sql] == [
        'UPDATE "schema_version" SET "version" = "version"']
    assert after == before
    if models.is_postgresql(database):
        assert inside == "off"
        assert after == "on"
    else:
        assert after == "1"  # NORMAL, as make_database sets it


def test_deferred_durability_flushes_when_block_raises(database) -> None:
    with pytest.raises(RuntimeError), models.deferred_durability():
        statements.insert(models.Event, actor="maildesk", action="created")
        raise RuntimeError("processing failed")

    assert models.Event.select().count() == 1
    assert _setting(database) in ("on", "1")


def test_statements_select_in_matches_peewee(database) -> None:
    contact = statements.insert(models.Contact, address="jan@example.org")
    ticket = statements.insert(models.Ticket, subject="VPN", requester=contact)
    for number in range(3):
        statements.insert(models.MessageReference, message_id=f"<m{number}@example.org>",
                          ticket=ticket, direction="in", kind="mail", recipients="")
    message_ids = ["<m0@example.org>", "<m2@example.org>", "<other@example.org>"]

    found = statements.select_in(models.MessageReference, "message_id", message_ids)
    expected = models.MessageReference.select().where(
        models.MessageReference.message_id.in_(message_ids))

    assert sorted(row.__data__["id"] for row in found) == sorted(row.id for row in expected)
    assert {row.message_id for row in found} == {"<m0@example.org>", "<m2@example.org>"}
    assert all(row.ticket.subject == "VPN" for row in found)
    assert statements.select_in(models.MessageReference, "message_id", []) == []
    with pytest.raises(ValueError):
        statements.select_in(models.MessageReference, "message_id", [None])


def test_related_row_cached_or_missing(database) -> None:
    contact = statements.insert(models.Contact, address="ewa@example.org")
    ticket = statements.insert(models.Ticket, subject="Drukarka", requester=contact)
    loaded = statements.first(models.Ticket, id=ticket.id)
    assert loaded is not None

    assert loaded.requester.address == "ewa@example.org"
    assert loaded.requester is loaded.requester  # kept after the first access
    assert not loaded.is_dirty()

    orphan = models.Ticket(subject="Sierota", requester=10**9)
    with pytest.raises(models.Contact.DoesNotExist):
        orphan.requester  # noqa: B018 (the access runs the query)


def test_statements_reject_none_values(database) -> None:
    with pytest.raises(ValueError, match="is_null"):
        statements.first(models.Contact, language=None)
    with pytest.raises(ValueError, match="is_null"):
        statements.exists(models.Contact, language=None)


def test_deferred_durability_failed_flush_is_temporary(database,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(database, postgresql) -> None:
        raise pw.OperationalError("disk I/O error")

    monkeypatch.setattr(models, "_flush_commits", failing)

    with pytest.raises(TemporaryError, match="disk I/O error"), models.deferred_durability():
        statements.insert(models.Event, actor="maildesk", action="created")


# --------------------------------------------------------------------------- PostgreSQL PREPARE


@pytest.fixture
def postgresql(database):
    if not models.is_postgresql(database):
        pytest.skip("server-side prepared statements exist on PostgreSQL only")
    return database


def test_statements_prepared_once_per_connection(postgresql,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    executed = record_sql(postgresql, monkeypatch)

    first = statements.insert(models.Contact, address="jan@example.org")
    second = statements.insert(models.Contact, address="ewa@example.org")
    found = statements.first(models.Contact, address="ewa@example.org")

    prepares = [sql for sql in executed if "PREPARE" in sql]
    assert len(prepares) == 2  # the INSERT and the SELECT, each once
    assert all(sql.startswith("EXECUTE maildesk_") for sql in executed if "PREPARE" not in sql)
    assert second.id == first.id + 1
    assert found is not None and found.id == second.id

    postgresql.close()
    postgresql.connect()
    executed.clear()
    statements.insert(models.Contact, address="olek@example.org")

    assert any("PREPARE" in sql for sql in executed)  # the new connection prepares again


def test_untyped_statement_runs_unprepared(postgresql) -> None:
    # COUNT($1) has no type the server could infer, so PREPARE fails.
    count = statements.Prepared(lambda address: models.Contact.select(pw.fn.COUNT(1))
                                .where(models.Contact.address == address))

    with models.database_proxy.atomic():
        statements.insert(models.Contact, address="jan@example.org")
        first = count.scalar("jan@example.org")
        second = count.scalar("jan@example.org")
        statements.insert(models.Contact, address="ewa@example.org")

    assert first == second == 1
    assert models.Contact.select().count() == 2


def test_statements_reuse_foreign_prepared_name(postgresql) -> None:
    statements.insert(models.Contact, address="jan@example.org")
    statements.first(models.Contact, address="jan@example.org")
    # As if another process had prepared them on this session: a fresh record and names.
    statements._prepared_on.clear()
    statements._names.clear()

    with models.database_proxy.atomic():
        again = statements.first(models.Contact, address="jan@example.org")
        statements.insert(models.Contact, address="ewa@example.org")

    assert again is not None
    assert models.Contact.select().count() == 2
    assert not statements._unpreparable & set(statements._names)  # used, not given up


def test_statements_survive_lost_prepared_statements(postgresql) -> None:
    statements.insert(models.Contact, address="jan@example.org")
    statements.first(models.Contact, address="jan@example.org")
    # What a pooler in transaction mode does: the next session has nothing prepared.
    postgresql.execute_sql("DEALLOCATE ALL")

    with pytest.raises(TemporaryError), models.database_proxy.atomic():
        statements.first(models.Contact, address="jan@example.org")
    with models.database_proxy.atomic():
        again = statements.first(models.Contact, address="jan@example.org")
        statements.insert(models.Contact, address="ewa@example.org")

    assert postgresql.prepare_statements is False
    assert again is not None
    assert models.Contact.select().count() == 2


def test_statements_number_past_integer_range(database) -> None:
    contact = statements.insert(models.Contact, address="jan@example.org")
    statements.insert(models.Ticket, subject="VPN", requester=contact)

    with models.database_proxy.atomic():
        missing = statements.first(models.Ticket, id=99_999_999_999)
        found = statements.first(models.Ticket, id=1)

    assert missing is None
    assert found is not None


def test_prepared_statement_keeps_percent_sign(postgresql) -> None:
    query = statements.Prepared(lambda address: models.Contact.select(pw.SQL("'5%%'"))
                                .where(models.Contact.address == address))
    statements.insert(models.Contact, address="jan@example.org")

    assert query.scalar("jan@example.org") == "5%"


def test_database_url_prepare_off(postgres_schema, monkeypatch: pytest.MonkeyPatch) -> None:
    database = models.open_database(postgres_schema.url + "&prepare=off"
                                    if "?" in postgres_schema.url
                                    else postgres_schema.url + "?prepare=off")
    try:
        executed = record_sql(database, monkeypatch)
        statements.insert(models.Contact, address="jan@example.org")

        assert executed and not any("PREPARE" in sql or "EXECUTE" in sql for sql in executed)
    finally:
        database.close()


def test_database_url_rejects_bad_prepare() -> None:
    with pytest.raises(ConfigError):
        models.make_database("postgresql://127.0.0.1/test?prepare=maybe")


def test_statements_insert_missing(database) -> None:
    first = statements.insert_missing(models.StoredContent, sha256="a" * 64, kind="raw",
                                      content=b"one")
    again = statements.insert_missing(models.StoredContent, sha256="a" * 64, kind="raw",
                                      content=b"two")

    assert first is True
    assert again is False
    row = models.StoredContent.get()
    assert bytes(row.content) == b"one"


def test_upsert_contact_reads_row_another_process_created(database,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from maildesk.parse import Address
    from maildesk.tickets import upsert_contact

    existing = statements.insert(models.Contact, address="jan@example.org", name="Jan")
    real_first = statements.first

    def first_misses_contacts(model, **equals):
        # The lookup ran before the other process committed its row.
        return None if model is models.Contact else real_first(model, **equals)

    monkeypatch.setattr(statements, "first", first_misses_contacts)
    with models.database_proxy.atomic():
        contact = upsert_contact(Address("Jan Nowak", "jan@example.org"))
        models.Event.create(actor="test", action="after_race")

    assert contact.id == existing.id
    assert models.Contact.select().count() == 1
    assert models.Event.select().count() == 1


# --------------------------------------------------------------------------- insert_later


def events() -> list[str]:
    return [event.action for event in models.Event.select().order_by(models.Event.id)]


def test_insert_later_row_visible_to_next_statement(database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[str] = []
    if models.is_postgresql(database):
        # Record the text that reaches the driver, deferred statements included.
        execute_sql = pw.PostgresqlDatabase.execute_sql
        monkeypatch.setattr(pw.PostgresqlDatabase, "execute_sql",
                            lambda self, sql, params=None: sent.append(sql)
                            or execute_sql(self, sql, params))

    with models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="first")
        statements.insert_later(models.Event, actor="maildesk", action="second")
        seen = events()

    assert seen == ["first", "second"]
    assert events() == ["first", "second"]
    if models.is_postgresql(database):
        # Both INSERTs went to the server with the SELECT, in one round trip.
        joined = [sql for sql in sent if sql.count("EXECUTE maildesk_") == 2]
        assert len(joined) == 1
        assert "SELECT" in joined[0].split(";")[-1]


def test_insert_later_sent_with_commit(database) -> None:
    with models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="last")

    assert events() == ["last"]


def test_insert_later_dropped_by_rollback(database) -> None:
    with pytest.raises(RuntimeError), models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="undone")
        raise RuntimeError("the transaction fails")

    with models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="kept")

    assert events() == ["kept"]


def test_insert_later_conflict_fails_the_transaction(database) -> None:
    statements.insert(models.ProcessedMessage, dedupe_key="mid:<a@example.org>",
                      raw_sha256="0" * 64, source="test", outcome="create")

    with pytest.raises(pw.IntegrityError), models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="before")
        statements.insert_later(models.ProcessedMessage, dedupe_key="mid:<a@example.org>",
                                raw_sha256="1" * 64, source="test", outcome="create")

    assert events() == []
    assert models.ProcessedMessage.select().count() == 1


def test_insert_later_conflict_raised_before_prepare(postgresql) -> None:
    statements.insert(models.ProcessedMessage, dedupe_key="mid:<a@example.org>",
                      raw_sha256="0" * 64, source="test", outcome="create")

    with pytest.raises(pw.IntegrityError), models.database_proxy.atomic():
        statements.insert_later(models.ProcessedMessage, dedupe_key="mid:<a@example.org>",
                                raw_sha256="1" * 64, source="test", outcome="create")
        # The first lookup of contacts on this connection prepares its statement.
        statements.first(models.Contact, address="zofia@example.org")

    assert models.ProcessedMessage.select().count() == 1


def test_insert_later_outside_transaction_runs_now(postgresql) -> None:
    statements.insert_later(models.Event, actor="maildesk", action="alone")

    assert postgresql._deferred() == []
    assert events() == ["alone"]


def test_insert_missing_later_skips_a_taken_key(database) -> None:
    with models.database_proxy.atomic():
        statements.insert_missing_later(models.StoredContent, sha256="a" * 64, kind="raw",
                                        content=b"first")
        statements.insert_missing_later(models.StoredContent, sha256="a" * 64, kind="raw",
                                        content=b"second")
        statements.insert_later(models.Event, actor="maildesk", action="after")

    stored = list(models.StoredContent.select())
    assert [bytes(row.content) for row in stored] == [b"first"]
    assert events() == ["after"]


@pytest.mark.parametrize("carrier", ["commit", "peewee query"])
def test_insert_later_lost_prepared_statement(postgresql, carrier: str) -> None:
    with models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="prepared")
    # What a pooler in transaction mode does: the next session has nothing prepared.
    postgresql.execute_sql("DEALLOCATE ALL")

    # The deferred EXECUTE reaches the server with the COMMIT or with a statement that
    # peewee runs, not through statements._execute.
    with pytest.raises(TemporaryError), models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="lost")
        if carrier == "peewee query":
            models.Contact.select().count()
    with models.database_proxy.atomic():
        statements.insert_later(models.Event, actor="maildesk", action="again")

    assert postgresql.prepare_statements is False
    assert events() == ["prepared", "again"]


def test_insert_later_alone_lost_prepared_statement(postgresql) -> None:
    statements.insert_later(models.Event, actor="maildesk", action="prepared")
    # What a pooler in transaction mode does: the next session has nothing prepared.
    postgresql.execute_sql("DEALLOCATE ALL")

    # Outside a transaction only this INSERT fails, so it runs again unprepared.
    statements.insert_later(models.Event, actor="maildesk", action="alone")

    assert postgresql.prepare_statements is False
    assert events() == ["prepared", "alone"]
