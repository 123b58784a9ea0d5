"""The peewee models and the database connection (SQLite by default, PostgreSQL by URL).

Times are stored as naive UTC datetimes; convert with ``to_utc`` on the way in. The
database is bound late through a DatabaseProxy, so tests and several daemons can point
the same models at different databases.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlparse

import peewee as pw

from maildesk.errors import ConfigError, TemporaryError
from maildesk.i18n import _

logger = logging.getLogger(__name__)

database_proxy = pw.DatabaseProxy()


def utcnow() -> datetime:
    """Return the current time as naive UTC, the form every DateTimeField holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def hour_start(moment: datetime) -> datetime:
    """Return the start of the clock hour that ``moment`` falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to naive UTC (naive values are taken as UTC already)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


class _RelatedRowAccessor(pw.ForeignKeyAccessor):
    """An accessor that loads a related row (``ticket.requester``) by cached SQL.

    peewee would build the SQL of ``Contact.get(Contact.id == 5)`` on every access, but
    the lookup by primary key is the same query each time, so ``statements.first`` runs it.
    """

    def get_rel_instance(self, instance: Any) -> Any:
        value = instance.__data__.get(self.name)
        if value is not None and self.name not in instance.__rel__ and self.field.lazy_load:
            from maildesk import statements

            related = statements.first(self.rel_model, **{self.field.rel_field.name: value})
            if related is None:
                raise self.rel_model.DoesNotExist(
                    f"{self.rel_model.__name__} {value} does not exist")
            instance.__rel__[self.name] = related
        return super().get_rel_instance(instance)


class ForeignKeyField(pw.ForeignKeyField):
    accessor_class = _RelatedRowAccessor


class BaseModel(pw.Model):
    id = pw.AutoField()

    class Meta:
        database = database_proxy
        legacy_table_names = False


class SchemaVersion(BaseModel):
    """The schema version of this database, one row; see ``maildesk.migrations``."""

    version = pw.IntegerField()
    updated_at = pw.DateTimeField(default=utcnow)


class Contact(BaseModel):
    """A person who writes to the desk or receives its mail, by lower-cased address."""

    address = pw.CharField(max_length=320, unique=True)
    name = pw.CharField(max_length=200, default="")
    language = pw.CharField(max_length=8, null=True)
    bounced_at = pw.DateTimeField(null=True)
    bounce_reason = pw.TextField(null=True)
    created_at = pw.DateTimeField(default=utcnow)


class Ticket(BaseModel):
    """One ticket; ``id`` is the ticket number that users see in the subject tag."""

    subject = pw.TextField()
    status = pw.CharField(max_length=20, default="new", index=True)
    type = pw.CharField(max_length=20, default="incident")
    category = pw.CharField(max_length=100, null=True)
    impact = pw.CharField(max_length=10, default="medium")
    urgency = pw.CharField(max_length=10, default="medium")
    priority = pw.IntegerField(default=3)
    group = pw.CharField(max_length=100, null=True, index=True)
    assignee = pw.CharField(max_length=100, null=True)
    requester = ForeignKeyField(Contact, backref="tickets")
    language = pw.CharField(max_length=8, default="pl")
    tags = pw.TextField(default="")
    reply_token = pw.CharField(max_length=64, default=lambda: secrets.token_hex(16))
    escalation_level = pw.IntegerField(default=0)
    linked_ticket = ForeignKeyField("self", null=True, backref="follow_ups", index=False)
    # The ticket this one was merged into as a duplicate (see maildesk.merging).
    # NOTE: not indexed, so listing the tickets merged into one reads the whole table;
    # only "tickets show" and retention do that.
    merged_into = ForeignKeyField("self", null=True, backref="merged_tickets", index=False)
    first_response_due = pw.DateTimeField(null=True)
    resolution_due = pw.DateTimeField(null=True)
    sla_paused_at = pw.DateTimeField(null=True)
    sla_state = pw.TextField(null=True)
    first_responded_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)
    resolved_at = pw.DateTimeField(null=True)
    closed_at = pw.DateTimeField(null=True)
    # Service levels (maildesk.lifecycle, maildesk.scheduler): when the scheduler next has
    # work on this ticket, each column indexed (see SPARSE_TICKET_COLUMNS) so a run is
    # one range query per kind.
    first_response_warning_due = pw.DateTimeField(null=True)
    resolution_warning_due = pw.DateTimeField(null=True)
    pending_reminder_due = pw.DateTimeField(null=True)
    reminders_sent = pw.IntegerField(default=0)
    auto_close_due = pw.DateTimeField(null=True)
    satisfaction = pw.IntegerField(null=True)
    satisfaction_at = pw.DateTimeField(null=True)

    if TYPE_CHECKING:  # attributes that peewee adds at run time
        linked_ticket_id: int | None
        merged_into_id: int | None
        requester_id: int
        messages: Any
        events: Any
        participants: Any

    @property
    def number(self) -> int:
        return int(self.id)


# Ticket columns that stay empty for most of a ticket's life. Their indexes hold only
# the rows with a value, so a new ticket writes no entry to them. The queries on these
# columns compare them with a value, which SQLite and PostgreSQL both read as
# IS NOT NULL, so they still use these partial indexes.
SPARSE_TICKET_COLUMNS = (
    "assignee", "linked_ticket", "first_response_due", "resolution_due", "resolved_at",
    "first_response_warning_due", "resolution_warning_due", "pending_reminder_due",
    "auto_close_due",
)


def _index_of_values(model: type[BaseModel], name: str) -> pw.ModelIndex:
    """Return an index named as peewee names a column's own, of the rows where it is set."""
    field = model._meta.fields[name]
    return model.index(field, name=f"{model._meta.table_name}_{field.column_name}").where(
        field.is_null(False))


for _name in SPARSE_TICKET_COLUMNS:
    Ticket.add_index(_index_of_values(Ticket, _name))


class Participant(BaseModel):
    """Someone besides the requester who takes part in a ticket (a Cc on their mail)."""

    ticket = ForeignKeyField(Ticket, backref="participants", on_delete="CASCADE")
    contact = ForeignKeyField(Contact, backref="participations")
    role = pw.CharField(max_length=20, default="cc")

    class Meta:
        indexes = ((("ticket", "contact"), True),)


class Message(BaseModel):
    """One entry of a ticket's conversation, incoming or outgoing.

    ``kind`` is customer, agent_reply, internal_note, auto_reply, system, held (kept for
    an agent to accept) or discarded (a held entry that was discarded or superseded).
    """

    ticket = ForeignKeyField(Ticket, backref="messages", on_delete="CASCADE")
    direction = pw.CharField(max_length=3)
    kind = pw.CharField(max_length=20, default="customer")
    message_id = pw.CharField(max_length=998, null=True, index=True)
    author = pw.CharField(max_length=320)
    author_name = pw.CharField(max_length=200, default="")
    subject = pw.TextField(default="")
    text = pw.TextField(default="")
    reply_text = pw.TextField(default="")
    html = pw.TextField(null=True)
    headers = pw.TextField(default="[]")
    raw_sha256 = pw.CharField(max_length=64, null=True)
    sent_date = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    if TYPE_CHECKING:
        ticket_id: int


class MessageReference(BaseModel):
    """A Message-ID that belongs to a ticket, sent or received, for threading replies.

    ``recipients`` lists (space-separated, lower-cased) who received that message: a
    reference from anyone else is weak evidence, because Message-IDs can be guessed.
    ``trusted`` marks a Message-ID that may prove a reply belongs to the ticket: one the
    desk sent, or one of a mail that created the ticket, joined it by a trusted
    reference or came from an agent who passed authentication. Any other incoming mail
    may carry a forged From, and its writer chose its Message-ID, To and Cc.
    """

    message_id = pw.CharField(max_length=998, index=True)
    ticket = ForeignKeyField(Ticket, backref="references", on_delete="CASCADE")
    direction = pw.CharField(max_length=3)
    kind = pw.CharField(max_length=20, default="customer")
    recipients = pw.TextField(default="")
    trusted = pw.BooleanField(default=False)
    created_at = pw.DateTimeField(default=utcnow)


class Attachment(BaseModel):
    """A stored attachment: the file lives once per sha256 under the storage folder."""

    message = ForeignKeyField(Message, backref="attachments", on_delete="CASCADE")
    filename = pw.CharField(max_length=255)
    content_type = pw.CharField(max_length=255)
    size = pw.IntegerField()
    sha256 = pw.CharField(max_length=64, index=True)
    content_id = pw.CharField(max_length=998, null=True)
    inline = pw.BooleanField(default=False)


class Event(BaseModel):
    """The audit trail: who changed what on which ticket, with the values before and after."""

    ticket = ForeignKeyField(Ticket, null=True, backref="events", on_delete="CASCADE")
    actor = pw.CharField(max_length=320)
    action = pw.CharField(max_length=50)
    before = pw.TextField(null=True)
    after = pw.TextField(null=True)
    detail = pw.TextField(null=True)
    created_at = pw.DateTimeField(default=utcnow)


# Events are looked up by action only for the mail loop alert, once a day per address
# or ticket. An index of every action would cost each new event one more page.
LOOP_ALERT_ACTION = "mail_loop_alert"
Event.add_index(Event.index(Event.action, name="event_action").where(
    Event.action == LOOP_ALERT_ACTION))


class Outbox(BaseModel):
    """One outgoing mail, rendered and ready; written in the transaction that caused it.

    ``state`` is pending, sending, sent, failed or cancelled.
    """

    ticket = ForeignKeyField(Ticket, null=True, backref="outbox", on_delete="SET NULL")
    kind = pw.CharField(max_length=50)
    message_id = pw.CharField(max_length=998, unique=True)
    sender = pw.CharField(max_length=320)
    recipients = pw.TextField()
    # The recipients still owed the mail after the server deferred them (4xx) and took the
    # others, space separated; the next attempt goes to them alone. ``recipients`` keeps
    # every address, which a delivery report is checked against.
    deferred = pw.TextField(null=True)
    subject = pw.TextField(default="")
    automatic = pw.BooleanField(default=True)
    raw = pw.BlobField()  # type: ignore[assignment]  # shadows Model.raw(), unused here
    state = pw.CharField(max_length=10, default="pending")
    attempts = pw.IntegerField(default=0)
    next_attempt_at = pw.DateTimeField(default=utcnow)
    last_error = pw.TextField(null=True)
    claimed_by = pw.CharField(max_length=100, null=True)
    created_at = pw.DateTimeField(default=utcnow)
    sent_at = pw.DateTimeField(null=True)

    class Meta:
        # The sender's queries: pending mail that is due, and claims gone stale.
        indexes = ((("state", "next_attempt_at"), False),)

    if TYPE_CHECKING:
        ticket_id: int | None


class AutomaticMailRecipient(BaseModel):
    """One recipient of one automatic outbox mail: the per-address and desk-wide hourly
    limits count these.

    ``address`` is in lower case without the ``+detail`` of its local part
    (``notify.strip_subaddress``). Agents and admins, whom the limits exempt, are not
    recorded. Counting here is an index range scan on (address, created_at), where
    counting outbox rows would read every automatic mail of the hour.
    """

    outbox = ForeignKeyField(Outbox, backref="automatic_recipients", on_delete="CASCADE")
    address = pw.CharField(max_length=320)
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("address", "created_at"), False),)


class ProcessedMessage(BaseModel):
    """The dedupe record of an incoming mail: Message-ID, else sha256 of the raw bytes."""

    dedupe_key = pw.CharField(max_length=998, unique=True)
    raw_sha256 = pw.CharField(max_length=64)
    source = pw.CharField(max_length=200)
    outcome = pw.CharField(max_length=30)
    ticket = ForeignKeyField(Ticket, null=True, on_delete="SET NULL")
    created_at = pw.DateTimeField(default=utcnow)


# The outcome of a processed mail whose ticket ``tickets purge`` deleted, with its content.
PURGED_OUTCOME = "purged"


class Quarantine(BaseModel):
    """A mail that could not be processed, kept with its error for an admin.

    ``state`` is held, released (processed again) or deleted. ``raw_sha256`` is empty
    when the source could not read the mail, so no raw mail is stored.
    """

    raw_sha256 = pw.CharField(max_length=64, index=True)
    message_id = pw.CharField(max_length=998, null=True)
    sender = pw.CharField(max_length=320, default="")
    subject = pw.TextField(default="")
    source = pw.CharField(max_length=200)
    error = pw.TextField()
    detail = pw.TextField(null=True)
    state = pw.CharField(max_length=10, default="held", index=True)
    created_at = pw.DateTimeField(default=utcnow)


class Group(BaseModel):
    """A support group from the configuration, kept in sync at start-up (``maildesk.agents``).

    Rows of groups removed from the configuration stay, marked inactive, because the
    audit trail and old tickets still name them.
    """

    name = pw.CharField(max_length=100, unique=True)
    tier = pw.IntegerField(default=1)
    manager = pw.CharField(max_length=320, null=True)
    escalates_to = pw.CharField(max_length=100, null=True)
    address = pw.CharField(max_length=320, null=True)
    description = pw.TextField(default="")
    active = pw.BooleanField(default=True)
    updated_at = pw.DateTimeField(default=utcnow)


class Agent(BaseModel):
    """An agent from the configuration, kept in sync at start-up (``maildesk.agents``).

    ``addresses`` and ``groups`` are space-separated, lower-cased addresses and group names.
    """

    login = pw.CharField(max_length=100, unique=True)
    name = pw.CharField(max_length=200, default="")
    addresses = pw.TextField(default="")
    groups = pw.TextField(default="")
    language = pw.CharField(max_length=8, null=True)
    commands = pw.BooleanField(default=True)
    active = pw.BooleanField(default=True)
    updated_at = pw.DateTimeField(default=utcnow)


class MailboxState(BaseModel):
    """Per-mailbox bookkeeping: the IMAP UIDVALIDITY last seen, and a lease for one daemon."""

    name = pw.CharField(max_length=500, unique=True)
    uidvalidity = pw.BigIntegerField(null=True)
    lease_owner = pw.CharField(max_length=100, null=True)
    lease_until = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField(default=utcnow)


class SlaNotice(BaseModel):
    """An SLA warning or breach notice already sent for a ticket, so it is never sent twice.

    ``target`` is first_response or resolution, ``kind`` warning or breach.
    """

    ticket = ForeignKeyField(Ticket, backref="sla_notices", on_delete="CASCADE")
    target = pw.CharField(max_length=20)
    kind = pw.CharField(max_length=10)
    due_at = pw.DateTimeField(null=True)
    sent_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("ticket", "target", "kind"), True),)

    if TYPE_CHECKING:
        ticket_id: int


class StoredContent(BaseModel):
    """A raw mail or attachment small enough to be kept in the database, by sha256.

    ``kind`` is the folder the raw store would have put it in: raw or attachments. Larger
    content lives in files. ``maildesk.rawstore`` decides which, and reads both.
    """

    sha256 = pw.CharField(max_length=64, primary_key=True)
    kind = pw.CharField(max_length=20)
    content = pw.BlobField()


class DailySummarySent(BaseModel):
    """A daily summary of one kind handled for one recipient and local day, so none is
    sent twice. An agent who also manages a group gets both kinds.

    ``queued`` is False when no mail was queued: the recipient had nothing open, or the
    outbox left the mail out (a bounced address, a template that failed).
    """

    day = pw.DateField()
    recipient = pw.CharField(max_length=320)
    kind = pw.CharField(max_length=10)
    queued = pw.BooleanField(default=True)
    sent_at = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("day", "recipient", "kind"), True),)


ALL_MODELS: tuple[type[BaseModel], ...] = (
    SchemaVersion,
    Contact,
    Ticket,
    Participant,
    Message,
    MessageReference,
    Attachment,
    Event,
    Outbox,
    AutomaticMailRecipient,
    ProcessedMessage,
    Quarantine,
    MailboxState,
    Group,
    Agent,
    SlaNotice,
    StoredContent,
    DailySummarySent,
)


class PostgresqlDatabase(pw.PostgresqlDatabase):
    """peewee's PostgreSQL database, knowing whether maildesk may prepare statements.

    It also defers the statements of an open transaction whose result the caller does
    not use (``defer``) and sends them in one round trip with the next statement or the
    COMMIT. Every later statement of the transaction reads their rows, as if they had
    run at once. A deferred statement that fails raises at that later statement, and a
    ROLLBACK drops the ones not sent.
    """

    def __init__(self, *args: Any, prepare_statements: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepare_statements = prepare_statements

    def defer(self, sql: str, params: Sequence[Any]) -> None:
        """Send ``sql`` with the next statement of the open transaction."""
        if not self.in_transaction():
            raise RuntimeError("defer() needs an open transaction: outside one, the "
                               "statement might never be sent")
        self._deferred().append((sql, list(params)))

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        deferred = self._deferred()
        if not deferred:
            return super().execute_sql(sql, params)
        sql, params = _joined(deferred, sql, params)
        deferred.clear()
        return self._execute_joined(sql, params)

    def commit(self) -> None:
        deferred = self._deferred()
        if not deferred:
            super().commit()
            return
        sql, params = _joined(deferred, "COMMIT", None)
        deferred.clear()
        self._execute_joined(sql, params)

    def rollback(self) -> None:
        self._deferred().clear()
        super().rollback()

    def send_deferred(self) -> None:
        """Send the deferred statements now, in one round trip of their own."""
        deferred = self._deferred()
        if deferred:
            sql, params = _joined(deferred[:-1], deferred[-1][0], deferred[-1][1])
            deferred.clear()
            self._execute_joined(sql, params)

    def _execute_joined(self, sql: str, params: list[Any]) -> Any:
        """Run a text that carries deferred statements.

        A deferred EXECUTE whose prepared statement the server session lost (a pooler)
        raises TemporaryError here, as statements._execute does for its own EXECUTE.
        """
        try:
            return super().execute_sql(sql, params)
        except pw.DatabaseError as error:
            from maildesk.statements import raise_if_statement_lost  # imports this module

            raise_if_statement_lost(self, error)
            raise

    def _deferred(self) -> list[tuple[str, list[Any]]]:
        """Return the deferred statements of this thread's connection."""
        state = getattr(self, "_state")  # noqa: B009 (peewee's per-thread state, untyped)
        connection = state.conn
        deferred: tuple[Any, list[tuple[str, list[Any]]]] | None = getattr(
            state, "maildesk_deferred", None)
        if deferred is None or deferred[0] is not connection:
            # A new connection (after a close or a reconnect) has no deferred statements.
            deferred = (connection, [])
            state.maildesk_deferred = deferred
        return deferred[1]


def _joined(deferred: list[tuple[str, list[Any]]], sql: str,
            params: Any) -> tuple[str, list[Any]]:
    """Return one text of the deferred statements and ``sql``, and their parameters.

    psycopg2 sends the text as one query, and the cursor returns the result of the last
    statement, which is ``sql``'s.
    """
    texts = [text for text, _values in deferred]
    values = [value for _text, statement_values in deferred for value in statement_values]
    return "; ".join([*texts, sql]), [*values, *(params or ())]


# How long a SQLite transaction waits for another process's write lock before it fails
# with "database is locked", in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 10000


def make_database(url: str) -> pw.Database:
    """Create (not connect) the peewee database for a ``sqlite:///`` or ``postgresql://`` URL.

    SQLite runs in WAL mode with synchronous=NORMAL: one commit per mail then costs a
    fraction of a millisecond instead of an fsync. Its transactions begin IMMEDIATE, so
    they wait for another process's write (busy_timeout) when they begin. A transaction
    that began by reading would instead fail with "database is locked" at its first
    write if another process committed in between; SQLite cannot wait in that case.
    PostgreSQL accepts ``?schema=NAME``, which sets the search_path (tests use one schema
    each).
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(url[len("sqlite:///"):])
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return pw.SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
            },
            lock_type="IMMEDIATE",
        )

    if parsed.scheme in ("postgresql", "postgres"):
        query: dict[str, Any] = {
            key: values[-1] for key, values in parse_qs(parsed.query).items()}
        options: dict[str, Any] = {}
        schema = query.pop("schema", None)
        if schema:
            options["options"] = f"-c search_path={schema}"
        prepare = query.pop("prepare", "on").lower()
        if prepare not in ("on", "off"):
            raise ConfigError(_("the database URL option prepare must be on or off, not "
                                "'{value}'").format(value=prepare))
        return PostgresqlDatabase(
            unquote(parsed.path.lstrip("/")) or "maildesk",
            prepare_statements=prepare == "on",
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            **options,
            **query,  # further libpq parameters, e.g. sslmode=require
        )

    raise ConfigError(
        _("unsupported database URL '{url}': use sqlite:///path or postgresql://host/name")
        .format(url=url)
    )


def redact_url(url: str) -> str:
    """Hide the password of a database URL before it reaches a log or an error."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@", 1)
    return url


def open_database(url: str, migrate: bool = True) -> pw.Database:
    """Bind the models to the database at ``url`` and bring its schema up to date."""
    from maildesk.migrations import migrate as run_migrations

    database = make_database(url)
    database_proxy.initialize(database)
    try:
        database.connect(reuse_if_open=True)
    except pw.DatabaseError as error:
        # OperationalError for a server that is down or a locked or unwritable file, and
        # DatabaseError itself for a SQLite file that is damaged or is no database.
        from maildesk.databaseerrors import describe  # imports this module

        raise TemporaryError(
            _("cannot connect to the database {url}: {error}").format(
                url=redact_url(url), error=describe(error))
        ) from error
    if migrate:
        run_migrations(database)
    return database


def is_postgresql(database: pw.Database | None = None) -> bool:
    target = database or database_proxy.obj
    return isinstance(target, pw.PostgresqlDatabase)


@contextmanager
def deferred_durability() -> Iterator[None]:
    """Let the commits inside the block skip their wait for the disk; flush them at the end.

    Use it around work whose source copy is released only after the block, as the daemon
    does around one fetched batch. PostgreSQL commits with ``synchronous_commit`` off
    inside. SQLite in WAL mode with synchronous=NORMAL never syncs on commit. At the end
    one commit that does sync is made (PostgreSQL: synchronous_commit on; SQLite:
    synchronous=FULL). Both logs are written in order, so that commit makes every
    earlier one durable too. A failed flush raises TemporaryError, so the caller keeps
    the source copy. When the block itself raises, the flush is still tried, and its own
    failure is only logged.
    """
    database = database_proxy.obj
    postgresql = is_postgresql(database)
    if postgresql:
        database.execute_sql("SET synchronous_commit TO OFF")
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        try:
            _flush_commits(database, postgresql)
        except (pw.DatabaseError, pw.InterfaceError) as error:
            from maildesk.databaseerrors import describe  # imports this module

            # A new connection starts with synchronous commits again.
            _close_quietly(database)
            if not failed:
                raise TemporaryError(_("flushing the database log to disk failed: {error}")
                                     .format(error=describe(error))) from error
            logger.warning(_("flushing the database log after a failed batch failed: "
                             "{error}").format(error=describe(error)))


def _close_quietly(database: pw.Database) -> None:
    try:
        database.close()
    except (pw.DatabaseError, pw.InterfaceError) as error:
        logger.debug("closing the database after a failed flush failed: %s", error)


def _flush_commits(database: pw.Database, postgresql: bool) -> None:
    """Make one synchronous commit that writes to the log, so every earlier commit is durable.

    A transaction that writes nothing commits without touching the log, so it rewrites
    the single schema_version row with its own value.
    """
    if postgresql:
        database.execute_sql("SET synchronous_commit TO ON")
    else:
        database.execute_sql("PRAGMA synchronous = FULL")
    try:
        with database.atomic():
            database.execute_sql(
                f'UPDATE "{SchemaVersion._meta.table_name}" SET "version" = "version"')
    finally:
        if not postgresql:
            database.execute_sql("PRAGMA synchronous = NORMAL")
