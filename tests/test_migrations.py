"""Schema migrations upgrade a database of an earlier release in place."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from deskfactory import mail, make_desk

from maildesk import migrations, models, pipeline
from maildesk.errors import MaildeskError
from maildesk.i18n import current_language, set_language
from maildesk.models import utcnow


def downgrade_to_version_4(database) -> None:
    """Turn a current database into what release 4 had: no AutomaticMailRecipient table."""
    database.drop_tables([models.AutomaticMailRecipient])
    models.SchemaVersion.delete().execute()
    models.SchemaVersion.create(version=4)


def outbox_row(number: int, recipients: str, *, automatic: bool = True,
               age: timedelta = timedelta(minutes=5)) -> models.Outbox:
    return models.Outbox.create(
        kind="ack", message_id=f"<ack.{number}@maildesk.example.com>",
        sender="helpdesk@example.com", recipients=recipients, automatic=automatic,
        raw=b"x", created_at=utcnow() - age)


def test_migrations_backfill_automatic_recipients(database_url: str) -> None:
    database = models.open_database(database_url)
    downgrade_to_version_4(database)
    outbox_row(1, " zofia@example.org ")
    outbox_row(2, " zofia@example.org jan@example.org ")
    outbox_row(3, " zofia@example.org ", automatic=False)
    outbox_row(4, " zofia@example.org ", age=timedelta(days=3))

    version = migrations.migrate(database)

    assert version == migrations.LATEST_VERSION
    rows = models.AutomaticMailRecipient.select().order_by(
        models.AutomaticMailRecipient.outbox, models.AutomaticMailRecipient.address)
    assert [(row.outbox.message_id, row.address) for row in rows] == [
        ("<ack.1@maildesk.example.com>", "zofia@example.org"),
        ("<ack.2@maildesk.example.com>", "jan@example.org"),
        ("<ack.2@maildesk.example.com>", "zofia@example.org"),
    ]
    database.close()


def test_migrations_logged_in_polish(database_url: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    database = models.open_database(database_url)
    downgrade_to_version_4(database)
    previous = current_language()
    set_language("pl")

    try:
        with caplog.at_level(logging.INFO, logger="maildesk.migrations"):
            migrations.migrate(database)
    finally:
        set_language(previous)
        database.close()

    assert ("wykonywanie migracji bazy danych 5: adresaci wiadomości automatycznych, "
            "dla limitu na adres") in caplog.messages


def test_migrations_are_idempotent(database_url: str) -> None:
    database = models.open_database(database_url)

    again = migrations.migrate(database)

    assert again == migrations.LATEST_VERSION
    assert models.SchemaVersion.select().count() == 1
    database.close()


def test_migrations_add_stored_content(database_url: str) -> None:
    database = models.open_database(database_url)
    database.drop_tables([models.StoredContent])
    models.SchemaVersion.delete().execute()
    models.SchemaVersion.create(version=5)

    version = migrations.migrate(database)

    assert version == migrations.LATEST_VERSION
    models.StoredContent.create(sha256="b" * 64, kind="raw", content=b"mail")
    assert bytes(models.StoredContent.get().content) == b"mail"
    database.close()


def test_migrations_make_sparse_indexes_partial(database_url: str) -> None:
    database = models.open_database(database_url)
    # Release 6 indexed these columns in full, the outbox by state, next attempt and
    # creation time, and events by every action.
    for table, column in [("ticket", "resolution_due"), ("ticket", "assignee"),
                          ("event", "action"), ("outbox", "state"),
                          ("outbox", "next_attempt_at"), ("outbox", "created_at")]:
        database.execute_sql(f'DROP INDEX IF EXISTS "{table}_{column}"')
        database.execute_sql(f'CREATE INDEX "{table}_{column}" ON "{table}" ("{column}")')
    database.execute_sql('DROP INDEX "outbox_state_next_attempt_at"')
    models.SchemaVersion.delete().execute()
    models.SchemaVersion.create(version=6)

    version = migrations.migrate(database)

    assert version == migrations.LATEST_VERSION
    ticket = {index.name: index.sql.upper() for index in database.get_indexes("ticket")}
    event = {index.name: index.sql.upper() for index in database.get_indexes("event")}
    outbox = {index.name for index in database.get_indexes("outbox")}
    assert "IS NOT NULL" in ticket["ticket_resolution_due"]
    assert "IS NOT NULL" in ticket["ticket_assignee"]
    assert "MAIL_LOOP_ALERT" in event["event_action"]
    assert "outbox_state_next_attempt_at" in outbox
    assert not outbox & {"outbox_state", "outbox_next_attempt_at", "outbox_created_at"}
    database.close()


def test_migrations_mark_trusted_references(database_url: str) -> None:
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    database = models.open_database(database_url)
    table = models.MessageReference._meta.table_name
    # Release 7 had no MessageReference.trusted.
    run(SchemaMigrator.from_database(database).drop_column(table, "trusted"))
    models.SchemaVersion.delete().execute()
    models.SchemaVersion.create(version=7)
    requester = models.Contact.create(address="zofia@example.org")
    ticket = models.Ticket.create(subject="Drukarka", requester=requester)
    stored = {
        # message_id: (direction, kind, evidence of its message_added event or None)
        "<first@example.org>": ("in", "customer", None),
        "<ack.1@maildesk.example.com>": ("out", "ack", None),
        "<by-reference@example.org>": ("in", "customer", "reference"),
        "<by-tag@evil.example>": ("in", "customer", "tag"),
        "<agent@example.com>": ("in", "agent_reply", "tag"),
        "<vacation@example.org>": ("in", "auto_reply", "reference"),
    }
    for message_id, (direction, kind, evidence) in stored.items():
        if direction == "in":
            models.Message.create(ticket=ticket, direction="in", kind=kind,
                                  message_id=message_id, author="x@example.org")
        if evidence is not None:
            models.Event.create(ticket=ticket, actor="x@example.org", action="message_added",
                                detail=json.dumps({"kind": kind, "evidence": evidence,
                                                   "message_id": message_id}))
        marks = ", ".join([database.param] * 6)
        database.execute_sql(
            f'INSERT INTO "{table}" (message_id, ticket_id, direction, kind, recipients, '
            f'created_at) VALUES ({marks})',
            (message_id, ticket.id, direction, kind, "zofia@example.org", utcnow()))

    migrations.migrate(database)

    trusted = {row.message_id: row.trusted for row in models.MessageReference.select()}
    assert trusted == {
        "<first@example.org>": True,
        "<ack.1@maildesk.example.com>": True,
        "<by-reference@example.org>": True,
        "<by-tag@evil.example>": False,
        "<agent@example.com>": True,
        "<vacation@example.org>": False,
    }
    database.close()


SCHEMAS = Path(__file__).parent / "data" / "schema"


def sqlite_database_of_version_2(path: Path) -> str:
    """Create a SQLite file with the tables of schema version 2 and return its URL."""
    connection = sqlite3.connect(path)
    connection.executescript((SCHEMAS / "version-2.sqlite.sql").read_text(encoding="utf-8"))
    connection.execute("INSERT INTO schema_version (version, updated_at) VALUES (2, ?)",
                       (utcnow(),))
    connection.commit()
    connection.close()
    return f"sqlite:///{path}"


def test_migrations_keep_ticket_children_on_sqlite(tmp_path: Path) -> None:
    url = sqlite_database_of_version_2(tmp_path / "version-2.sqlite3")
    connection = sqlite3.connect(tmp_path / "version-2.sqlite3")
    now = utcnow()
    statements = [
        "INSERT INTO contact VALUES (1, 'zofia@example.org', 'Zofia', NULL, NULL, NULL, :now)",
        "INSERT INTO contact VALUES (2, 'jan@example.org', 'Jan', NULL, NULL, NULL, :now)",
        "INSERT INTO ticket VALUES (1, 'Drukarka', 'new', 'incident', NULL, 'medium', 'medium', "
        "3, 'pierwsza-linia', NULL, 1, 'pl', '', 'token', 0, NULL, NULL, NULL, NULL, NULL, "
        "NULL, :now, :now, NULL, NULL)",
        "INSERT INTO message VALUES (1, 1, 'in', 'customer', '<m1@example.org>', "
        "'zofia@example.org', 'Zofia', 'Drukarka', 'tekst', 'tekst', NULL, '[]', NULL, NULL, "
        ":now)",
        "INSERT INTO attachment VALUES (1, 1, 'zrzut.png', 'image/png', 3, 'ab', NULL, 0)",
        "INSERT INTO event VALUES (1, 1, 'zofia@example.org', 'created', NULL, NULL, NULL, :now)",
        "INSERT INTO message_reference VALUES (1, '<m1@example.org>', 1, 'in', 'customer', "
        "'helpdesk@example.com', :now)",
        "INSERT INTO participant VALUES (1, 1, 2, 'cc')",
        "INSERT INTO outbox VALUES (1, 1, 'ack', '<ack.1@example.com>', 'helpdesk@example.com', "
        "'zofia@example.org', 'Drukarka', 1, x'00', 'sent', 1, :now, NULL, NULL, :now, :now)",
        "INSERT INTO processed_message VALUES (1, 'mid:<m1@example.org>', 'ab', 'pipe', "
        "'create', 1, :now)",
    ]
    for statement in statements:
        connection.execute(statement, {"now": now})
    connection.commit()
    connection.close()

    database = models.open_database(url)

    # Migration 3 rebuilds the ticket table to add a NOT NULL column. Its DROP TABLE
    # must not delete or unlink the rows that refer to the tickets.
    assert migrations.current_version(database) == migrations.LATEST_VERSION
    assert models.Message.select().where(models.Message.ticket == 1).count() == 1
    assert models.Attachment.select().count() == 1
    assert models.Event.select().where(models.Event.ticket == 1).count() == 1
    assert models.MessageReference.select().where(models.MessageReference.ticket == 1).count() == 1
    assert models.Participant.select().where(models.Participant.ticket == 1).count() == 1
    assert models.Outbox.get_by_id(1).ticket_id == 1
    assert models.ProcessedMessage.get_by_id(1).ticket_id == 1
    assert database.pragma("foreign_keys") == 1
    database.close()


def test_migrations_roll_back_dangling_references(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = models.open_database(f"sqlite:///{tmp_path / 'maildesk.sqlite3'}")
    requester = models.Contact.create(address="zofia@example.org")
    ticket = models.Ticket.create(subject="Drukarka", requester=requester)
    models.Message.create(ticket=ticket, direction="in", author="zofia@example.org")

    def delete_tickets(database) -> None:
        database.execute_sql('DELETE FROM "ticket"')

    broken = (migrations.LATEST_VERSION + 1, "deletes every ticket", delete_tickets)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "LATEST_VERSION", broken[0])

    with pytest.raises(MaildeskError, match="message"):
        migrations.migrate(database)

    assert migrations.current_version(database) == broken[0] - 1
    assert models.Ticket.select().count() == 1
    assert database.pragma("foreign_keys") == 1
    database.close()


def test_migrations_run_once_when_two_start(database_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    database = models.open_database(database_url)
    entered = threading.Event()
    release = threading.Event()
    applied: list[str] = []

    def slow_step(database) -> None:
        applied.append(threading.current_thread().name)
        entered.set()
        release.wait(10)

    added = (migrations.LATEST_VERSION + 1, "a slow step", slow_step)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, added))
    monkeypatch.setattr(migrations, "LATEST_VERSION", added[0])
    versions: dict[str, int] = {}
    errors: list[BaseException] = []

    def start(name: str) -> threading.Thread:
        def run() -> None:
            try:
                versions[name] = migrations.migrate(database)
            except BaseException as error:  # reported by the asserts below
                errors.append(error)
            finally:
                database.close()

        thread = threading.Thread(target=run, name=name)
        thread.start()
        return thread

    first = start("first")
    assert entered.wait(10)
    # The second process read the old version before the first committed.
    second = start("second")
    time.sleep(1)
    release.set()
    first.join(20)
    second.join(20)

    assert errors == []
    assert applied == ["first"]
    assert versions == {"first": added[0], "second": added[0]}
    database.close()


def test_migrations_keep_old_mail_duplicate(tmp_path: Path, database_url: str) -> None:
    desk = make_desk(tmp_path, database_url)
    request = mail(message_id="<m1@example.org>")
    newsletter = mail(sender="Biuletyn <biuletyn@example.org>", message_id="<n1@example.org>",
                      headers={"Precedence": "bulk"})
    assert pipeline.process(desk, request, "pipe").action == "create"
    assert pipeline.process(desk, newsletter, "pipe").action == "ignore"
    # The first releases keyed a mail by its Message-ID alone.
    processed = models.ProcessedMessage
    for message_id in ("<m1@example.org>", "<n1@example.org>"):
        (processed.update(dedupe_key=f"mid:{message_id}")
         .where(processed.dedupe_key.endswith(f" {message_id}")).execute())
    processed.create(dedupe_key="mid:<lost@example.org>", raw_sha256="c" * 64, source="pipe",
                     outcome="create")
    models.SchemaVersion.delete().execute()
    models.SchemaVersion.create(version=9)

    migrations.migrate(models.database_proxy.obj)

    keys = {row.dedupe_key for row in processed.select()}
    assert keys == {"mid:zofia.wisniewska@example.org <m1@example.org>",
                    "mid:biuletyn@example.org <n1@example.org>",
                    "mid:<lost@example.org>"}
    assert pipeline.process(desk, request, "pipe").action == "duplicate"
    assert pipeline.process(desk, newsletter, "pipe").action == "duplicate"
    assert models.Ticket.select().count() == 1


def test_migrations_add_merged_into(database_url: str) -> None:
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    database = models.open_database(database_url)
    contact = models.Contact.create(address="zofia@example.org")
    kept = models.Ticket.create(subject="Drukarka", requester=contact)
    table = models.Ticket._meta.table_name
    migrator = SchemaMigrator.from_database(database)
    # SQLite drops a column of a foreign key only by copying the table (legacy mode).
    legacy = {"legacy": True} if not models.is_postgresql(database) else {}
    run(migrator.drop_column(table, "merged_into_id", **legacy))
    models.SchemaVersion.delete().execute()
    models.SchemaVersion.create(version=11)

    version = migrations.migrate(database)

    assert version == migrations.LATEST_VERSION
    duplicate = models.Ticket.create(subject="Drukarka znowu", requester=contact,
                                     merged_into=kept.id)
    assert models.Ticket.get_by_id(duplicate.id).merged_into_id == kept.id
    assert models.Ticket.get_by_id(kept.id).merged_into_id is None
    database.close()
