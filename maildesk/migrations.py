"""Schema versions: every release upgrades an existing database in place.

Each migration is a function that takes the database and runs inside one transaction;
``SchemaVersion`` records the last one applied. A site never deletes its database to
upgrade; add a new function at the end of MIGRATIONS instead of editing an old one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import peewee as pw

from maildesk import models
from maildesk.errors import ConfigError, MaildeskError
from maildesk.i18n import N_, _

logger = logging.getLogger(__name__)


def _initial_schema(database: pw.Database) -> None:
    database.create_tables(models.ALL_MODELS, safe=True)


def _agents_and_groups(database: pw.Database) -> None:
    database.create_tables([models.Group, models.Agent], safe=True)


def _service_levels(database: pw.Database) -> None:
    """Add the scheduler's due-time columns, the satisfaction rating and SlaNotice.

    A database created by migration 1 from today's models has the columns already.
    """
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    table = models.Ticket._meta.table_name
    existing = {column.name for column in database.get_columns(table)}
    migrator = SchemaMigrator.from_database(database)
    names = ("first_response_warning_due", "resolution_warning_due", "pending_reminder_due",
             "auto_close_due", "reminders_sent", "satisfaction", "satisfaction_at")
    for name in names:
        if name not in existing:
            # add_column also creates the index of an indexed field.
            run(migrator.add_column(table, name, getattr(models.Ticket, name)))
    database.create_tables([models.SlaNotice], safe=True)


def _outbox_created_index(database: pw.Database) -> None:
    """Index Outbox.created_at: the automatic-mail limits count the rows of the last hour.

    Without it that count reads the whole outbox for every automatic mail, which grows
    with every mail ever sent.
    """
    table = models.Outbox._meta.table_name
    database.execute_sql(
        f'CREATE INDEX IF NOT EXISTS "{table}_created_at" ON "{table}" ("created_at")')


def _automatic_mail_recipients(database: pw.Database) -> None:
    """Add AutomaticMailRecipient and fill it from the automatic mail of the last day.

    The per-address limit counts the last hour, so a day of history keeps it exact
    across the upgrade.
    """
    from datetime import timedelta

    database.create_tables([models.AutomaticMailRecipient], safe=True)
    since = models.utcnow() - timedelta(days=1)
    rows = (models.Outbox.select(models.Outbox.id, models.Outbox.recipients,
                                 models.Outbox.created_at)
            .where(models.Outbox.automatic == True,  # noqa: E712 (peewee expression)
                   models.Outbox.created_at >= since))
    backfill = [
        {"outbox": row.id, "address": address, "created_at": row.created_at}
        for row in rows for address in row.recipients.split()
    ]
    for start in range(0, len(backfill), 500):
        models.AutomaticMailRecipient.insert_many(backfill[start:start + 500]).execute()


def _stored_content(database: pw.Database) -> None:
    """Add StoredContent: small raw mails and attachments move from files to the database.

    Files already stored stay where they are and are read from there.
    """
    database.create_tables([models.StoredContent], safe=True)


def _leaner_indexes(database: pw.Database) -> None:
    """Index only the ticket columns that are set, and write fewer outbox indexes.

    The indexes of ``models.SPARSE_TICKET_COLUMNS`` and the one of ``Event.action``
    become partial. The outbox's indexes of state and of the next attempt become one
    index of both. The one of its creation time goes: since migration 5 the per-address
    limit counts ``AutomaticMailRecipient`` rows, and the per-ticket limit finds its
    rows by ticket.
    """
    ticket = models.Ticket._meta.table_name
    outbox = models.Outbox._meta.table_name
    replaced = [f"{ticket}_{models.Ticket._meta.fields[name].column_name}"
                for name in models.SPARSE_TICKET_COLUMNS]
    replaced += ["event_action", f"{outbox}_state", f"{outbox}_next_attempt_at",
                 f"{outbox}_created_at"]
    for name in replaced:
        database.execute_sql(f'DROP INDEX IF EXISTS "{name}"')

    # With safe=True the tables stay and only the missing indexes are created. Peewee
    # writes the values of partial indexes as literals, as SQLite requires.
    database.create_tables([models.Ticket, models.Event, models.Outbox], safe=True)


def _trusted_references(database: pw.Database) -> None:
    """Add MessageReference.trusted and mark the Message-IDs that may prove a reply.

    The desk's own Message-IDs are trusted. An incoming one is trusted when its mail was
    the first of its ticket (the one that created it). It is also trusted when the
    ``message_added`` event of its mail records an agent's reply or note as its kind, or
    a user's mail that joined by a reference. An automatic reply stays untrusted,
    because a suspected loop appends it to a ticket other than the one its reference
    named, and the event does not say which. So does mail that joined by its tag alone.
    """
    import json

    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    reference = models.MessageReference
    table = reference._meta.table_name
    if "trusted" not in {column.name for column in database.get_columns(table)}:
        run(SchemaMigrator.from_database(database).add_column(table, "trusted",
                                                              reference.trusted))
    reference.update(trusted=True).where(reference.direction == "out").execute()

    message = models.Message
    first_entries = (message.select(pw.fn.MIN(message.id))
                     .where(message.direction == "in").group_by(message.ticket))
    first = (message.select(message.ticket, message.message_id)
             .where(message.id.in_(first_entries), message.message_id.is_null(False)))
    trusted = {(row.ticket_id, row.message_id) for row in first}
    added = (models.Event.select(models.Event.ticket, models.Event.detail)
             .where(models.Event.action == "message_added",
                    models.Event.ticket.is_null(False)).tuples())
    for ticket, detail in added.iterator():
        fields = json.loads(detail) if detail else {}
        message_id = fields.get("message_id")
        kind = fields.get("kind")
        proven = (kind in ("agent_reply", "internal_note")
                  or (kind == "customer" and fields.get("evidence") == "reference"))
        if message_id and proven:
            trusted.add((ticket, message_id))

    pairs = sorted(trusted)
    for start in range(0, len(pairs), 200):
        chunk = pairs[start:start + 200]
        (reference.update(trusted=True)
         .where(reference.direction == "in",
                pw.Tuple(reference.ticket, reference.message_id).in_(chunk))
         .execute())


def _deferred_recipients(database: pw.Database) -> None:
    """Add Outbox.deferred: the recipients a server deferred while it took the others."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    table = models.Outbox._meta.table_name
    if "deferred" not in {column.name for column in database.get_columns(table)}:
        run(SchemaMigrator.from_database(database).add_column(table, "deferred",
                                                              models.Outbox.deferred))


def _daily_summaries(database: pw.Database) -> None:
    """Add DailySummarySent: the daily summaries each agent and manager got."""
    database.create_tables([models.DailySummarySent], safe=True)


def _sender_in_dedupe_keys(database: pw.Database) -> None:
    """Rewrite the dedupe keys ``mid:<Message-ID>`` of the first releases as today's keys.

    Those releases keyed a mail by its Message-ID alone, and later ones by its sender and
    Message-ID (``pipeline.dedupe_key``). A copy of an old mail that comes again after
    the upgrade, from an IMAP move that failed or an MTA that delivered twice, would
    then open a second ticket. The sender is the author of the incoming message stored
    from the same raw mail, or the actor of the ``ignored`` event of a mail that made no
    message (``maildesk`` when it had no From). A key that a later copy took already
    stays as it was.
    NOTE: a row whose message or event is gone keeps its old key, which no mail matches.
    """
    import json

    from maildesk.pipeline import message_id_key

    processed = models.ProcessedMessage
    legacy = (processed.select(processed.id, processed.dedupe_key, processed.raw_sha256)
              .where(pw.fn.SUBSTR(processed.dedupe_key, 1, 5) == "mid:<")
              .order_by(processed.id))
    if not legacy.exists():
        return

    ignored_by: dict[str, str] = {}
    events = (models.Event.select(models.Event.actor, models.Event.detail)
              .where(models.Event.action == "ignored").order_by(models.Event.id).tuples())
    for actor, detail in events.iterator():
        message_id = json.loads(detail or "{}").get("message_id")
        if message_id:
            ignored_by.setdefault(message_id, "" if actor == "maildesk" else actor)

    rewritten = kept = 0
    last_id = 0
    while chunk := list(legacy.where(processed.id > last_id).limit(500).tuples().iterator()):
        last_id = chunk[-1][0]
        authors = _incoming_authors(sorted({raw_sha256 for _id, _key, raw_sha256 in chunk}))
        for row_id, key, raw_sha256 in chunk:
            message_id = key[len("mid:"):]
            sender = authors.get((raw_sha256, message_id), ignored_by.get(message_id))
            new_key = message_id_key(sender, message_id) if sender is not None else None
            if new_key is None or processed.select().where(
                    processed.dedupe_key == new_key).exists():
                kept += 1
                continue
            processed.update(dedupe_key=new_key).where(processed.id == row_id).execute()
            rewritten += 1

    logger.info(_("duplicate keys of mail processed by the first releases: {rewritten} "
                  "rewritten with the sender, {kept} left as they were").format(
        rewritten=rewritten, kept=kept))


def _incoming_authors(raw_hashes: list[str]) -> dict[tuple[str, str], str]:
    """Map (raw mail sha256, Message-ID) of the incoming messages to their authors."""
    message = models.Message
    rows = (message.select(message.raw_sha256, message.message_id, message.author)
            .where(message.direction == "in", message.raw_sha256.in_(raw_hashes))
            .tuples().iterator())
    return {(raw_sha256, message_id): author for raw_sha256, message_id, author in rows}


def _merged_tickets(database: pw.Database) -> None:
    """Add Ticket.merged_into: the ticket a duplicate was merged into."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    table = models.Ticket._meta.table_name
    if "merged_into_id" not in {column.name for column in database.get_columns(table)}:
        run(SchemaMigrator.from_database(database).add_column(table, "merged_into_id",
                                                              models.Ticket.merged_into))


MIGRATIONS: tuple[tuple[int, str, Callable[[pw.Database], None]], ...] = (
    (1, N_("initial schema"), _initial_schema),
    (2, N_("agents and groups"), _agents_and_groups),
    (3, N_("service levels: scheduler due times, satisfaction"), _service_levels),
    (4, N_("outbox index on creation time"), _outbox_created_index),
    (5, N_("recipients of automatic mail, for the per-address limit"), _automatic_mail_recipients),
    (6, N_("small raw mails and attachments in the database"), _stored_content),
    (7, N_("partial and fewer indexes of tickets, events and the outbox"), _leaner_indexes),
    (8, N_("trusted thread references"), _trusted_references),
    (9, N_("recipients of outgoing mail deferred by the server"), _deferred_recipients),
    (10, N_("daily summaries sent to agents and managers"), _daily_summaries),
    (11, N_("senders in the duplicate keys of mail processed by the first releases"),
     _sender_in_dedupe_keys),
    (12, N_("tickets merged into other tickets"), _merged_tickets),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(database: pw.Database) -> int:
    if not database.table_exists(models.SchemaVersion._meta.table_name):
        return 0
    row = models.SchemaVersion.select().order_by(models.SchemaVersion.version.desc()).first()
    return row.version if row else 0


def migrate(database: pw.Database) -> int:
    """Apply every pending migration; return the schema version afterwards.

    Several processes may start on an old database at once: daemons, ``deliver`` runs
    and admin commands. Each migration's transaction therefore takes a lock first and
    reads the version again under it, so only one of them applies a migration.
    """
    version = _known_version(database)
    for number, description, step in MIGRATIONS:
        if number <= version:
            continue
        with _foreign_key_actions_off(database), database.atomic():
            _lock_schema(database)
            version = _known_version(database)
            if number <= version:
                continue
            logger.info(_("applying database migration {number}: {description}").format(
                number=number, description=_(description)))
            dangling = _dangling_references(database)
            step(database)
            _check_foreign_keys(database, number, dangling)
            models.SchemaVersion.delete().execute()
            models.SchemaVersion.create(version=number)
        version = number
    return version


def _known_version(database: pw.Database) -> int:
    """Return the schema version; raise ConfigError when it is newer than this maildesk."""
    version = current_version(database)
    if version > LATEST_VERSION:
        raise ConfigError(
            _("the database has schema version {found}, newer than this maildesk knows "
              "({known}): upgrade maildesk").format(found=version, known=LATEST_VERSION)
        )
    return version


def _lock_schema(database: pw.Database) -> None:
    """Wait until no other process migrates this database; hold the lock until the commit.

    SQLite needs nothing here, because maildesk begins its transactions IMMEDIATE, which
    takes the write lock at once. PostgreSQL takes a transaction-level advisory lock,
    keyed by the schema, so desks in other schemas of one database do not wait.
    """
    if not isinstance(database, pw.PostgresqlDatabase):
        return

    schema = database.execute_sql("SELECT current_schema()").fetchone()[0]
    digest = hashlib.sha256(f"maildesk schema migrations {schema}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    if database.execute_sql("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]:
        return
    logger.info(_("waiting for another maildesk process to finish migrating the database"))
    database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


@contextmanager
def _foreign_key_actions_off(database: pw.Database) -> Iterator[None]:
    """Turn SQLite's foreign keys off around one migration's transaction.

    To change a column, peewee's SQLite migrator copies the table and drops the old one.
    With foreign keys on, that DROP TABLE deletes every row first and runs the ON DELETE
    actions: the messages, events and participants of each ticket would go with it.
    SQLite ignores ``PRAGMA foreign_keys`` inside a transaction, so it is set outside.
    PostgreSQL alters tables in place and needs nothing.
    """
    if not isinstance(database, pw.SqliteDatabase) or not database.pragma("foreign_keys"):
        yield
        return

    database.pragma("foreign_keys", 0)
    try:
        yield
    finally:
        database.pragma("foreign_keys", 1)


def _dangling_references(database: pw.Database) -> set[tuple[object, ...]]:
    """Return SQLite's rows that refer to a missing row, as ``PRAGMA foreign_key_check`` does.

    PostgreSQL checks every reference as it is written, so there it returns nothing.
    """
    if not isinstance(database, pw.SqliteDatabase):
        return set()
    return {tuple(row) for row in database.execute_sql("PRAGMA foreign_key_check")}


def _check_foreign_keys(database: pw.Database, number: int,
                        before: set[tuple[object, ...]]) -> None:
    """Raise MaildeskError, so migration ``number`` rolls back, when it left a dangling
    reference that was not there ``before`` it.

    SQLite checks no foreign key while ``_foreign_key_actions_off`` is in effect.
    """
    added = sorted(_dangling_references(database) - before, key=repr)
    if not added:
        return

    table, _rowid, parent = added[0][:3]
    raise MaildeskError(
        _("database migration {number} would leave rows of {table} that refer to missing "
          "rows of {parent}, so it was rolled back and the database is unchanged: go back to "
          "the previous maildesk and report this to its maintainers").format(
            number=number, table=table, parent=parent))
