"""The few SQL statements every incoming mail runs, with their text built once.

peewee builds the SQL text of a query anew on every call by walking its expression
tree. For a one-row INSERT or a lookup by one column that took 100-150 microseconds,
while SQLite ran the statement in 3-30 (measured with ``timeit`` on these models). These
helpers cache the text per model, column set and database kind. They still take the
table, column names, defaults and value conversions from the peewee models, so the
schema is described in one place only.

``insert``, ``first``, ``exists`` and ``update`` return what peewee would.
``Prepared`` caches the text of any query that returns plain values (counts, strings).
Use peewee directly for everything else.

On PostgreSQL each of these statements is also prepared on the server (SQL ``PREPARE``)
the first time a connection runs it, and run with ``EXECUTE`` after that, which spares
the server parsing and planning it for every mail. A statement whose parameter types
the server cannot infer runs unprepared. A connection pooler in transaction mode
(PgBouncer) does not keep prepared statements, so ``?prepare=off`` in the database URL
turns this off. Without it, the first statement found missing turns it off too, and
the transaction it was in fails with TemporaryError, to be tried again.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import peewee as pw

from maildesk.errors import TemporaryError
from maildesk.i18n import _
from maildesk.models import BaseModel, database_proxy

logger = logging.getLogger(__name__)

Row = TypeVar("Row", bound=BaseModel)

_texts: dict[tuple[Any, ...], str] = {}

# PostgreSQL: the name each statement text is prepared under, the texts the server
# would not prepare, and the names prepared on each open connection. The connections
# are held weakly, so a dropped connection closes as it would without this record.
_names: dict[str, str] = {}
_unpreparable: set[str] = set()
_prepared_on: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_PLACEHOLDER = re.compile(r"%[s%]")
# A lookup of a list of values is prepared for lists up to this long.
_PREPARED_IN_VALUES = 8
# The range of PostgreSQL's integer, the type of every id column.
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
# SQLSTATE 26000: EXECUTE named a statement the session does not have.
_UNKNOWN_PREPARED_STATEMENT = "26000"
# SQLSTATE 42P05: a statement of that name is already prepared on the connection, by
# this process before its record of it was lost or by another on a shared session.
# The name comes from the text, so it is this statement.
_DUPLICATE_PREPARED_STATEMENT = "42P05"


def _database() -> pw.Database:
    database = database_proxy.obj
    if database is None:
        raise pw.InterfaceError("the database is not open (models.open_database)")
    return database


def _execute(database: pw.Database, text: str, params: Sequence[Any]) -> Any:
    """Run one cached statement, prepared on PostgreSQL, and return the cursor."""
    name = _prepare(database, text) if _preparable(database, text, params) else None
    if name is None:
        return database.execute_sql(text, params)

    try:
        return database.execute_sql(_call(name, params), params or None)
    except pw.DatabaseError as error:
        if database.in_transaction():
            raise_if_statement_lost(database, error)
        if _sqlstate(error) != _UNKNOWN_PREPARED_STATEMENT:
            raise

    # Outside a transaction only this statement failed, so it runs again unprepared.
    _stop_preparing(database)
    return database.execute_sql(text, params)


def _call(name: str, params: Sequence[Any]) -> str:
    """Return the EXECUTE of the prepared statement ``name`` with ``params``."""
    if params:
        return f"EXECUTE {name} ({', '.join(['%s'] * len(params))})"
    return f"EXECUTE {name}"


def raise_if_statement_lost(database: pw.Database, error: pw.DatabaseError) -> None:
    """Raise TemporaryError when ``error`` is SQLSTATE 26000, a lost prepared statement.

    Preparing then stops in this process, and the transaction that ran the statement
    fails, to be tried again. ``PostgresqlDatabase`` calls this for the deferred
    statements it sends, because their EXECUTE may fail at the COMMIT.
    """
    if _sqlstate(error) != _UNKNOWN_PREPARED_STATEMENT:
        return
    _stop_preparing(database)
    raise TemporaryError(_("a prepared statement was missing on the database server; "
                           "the mail is tried again without prepared statements")) from error


def _stop_preparing(database: pw.Database) -> None:
    # The session lost what this connection prepared: a pooler in transaction mode
    # hands each transaction another server session. Preparing stops in this process.
    database.prepare_statements = False  # type: ignore[attr-defined]
    logger.warning(_("the database session lost its prepared statements (a connection "
                     "pooler in transaction mode?), so maildesk stops preparing them; "
                     "add ?prepare=off to the database URL"))


def _preparable(database: pw.Database, text: str, params: Sequence[Any]) -> bool:
    """Tell whether ``text`` may run as a prepared statement with these ``params``.

    A prepared statement types its parameters once, from the columns. A number from a
    mail (a ticket tag with twelve digits) may not fit an ``integer`` parameter, where
    the same SQL with the number written in simply finds no row, so such a call runs
    unprepared.
    """
    return (isinstance(database, pw.PostgresqlDatabase)
            and getattr(database, "prepare_statements", True)
            and text not in _unpreparable
            and not any(type(value) is int and not _INT_MIN <= value <= _INT_MAX
                        for value in params))


def _sqlstate(error: pw.DatabaseError) -> str | None:
    """Return the SQLSTATE of the driver error behind a peewee error, if it has one."""
    cause = getattr(error, "orig", None) or error.__context__
    return getattr(cause, "pgcode", None)


def _prepare(database: pw.Database, text: str) -> str | None:
    """Prepare ``text`` once per connection and return its name, or None when it cannot be."""
    connection = database.connection()  # one per thread
    prepared = _prepared_on.get(connection)
    if prepared is None:
        prepared = _prepared_on[connection] = set()  # a new connection has nothing
    name = _names.get(text)
    if name is None:
        # Named after the text, so one name means one statement in every process, also
        # where several processes end up on one server session.
        name = _names[text] = "maildesk_" + hashlib.sha256(text.encode()).hexdigest()[:24]
    if name in prepared:
        return name

    # psycopg2 placeholders become $1, $2, ... A doubled percent sign stays doubled:
    # psycopg2 still reads the PREPARE text as a format and turns it into one.
    numbers = iter(range(1, text.count("%s") + 1))
    server_text = _PLACEHOLDER.sub(
        lambda match: "%%" if match.group(0) == "%%" else f"${next(numbers)}", text)
    # Inside a transaction a failed PREPARE would abort it, so it runs in a savepoint.
    guarded = database.in_transaction()
    if guarded and hasattr(database, "send_deferred"):
        # A deferred statement that fails must raise here, not inside the savepoint.
        database.send_deferred()
    try:
        if guarded:
            database.execute_sql(f"SAVEPOINT maildesk_prepare; PREPARE {name} AS "
                                 f"{server_text}; RELEASE SAVEPOINT maildesk_prepare")
        else:
            database.execute_sql(f"PREPARE {name} AS {server_text}")
    except pw.DatabaseError as error:
        if guarded:
            database.execute_sql("ROLLBACK TO SAVEPOINT maildesk_prepare; "
                                 "RELEASE SAVEPOINT maildesk_prepare")
        if _sqlstate(error) == _DUPLICATE_PREPARED_STATEMENT:
            prepared.add(name)
            return name
        logger.debug("statement runs unprepared (%s): %s", str(error).strip(), text)
        _unpreparable.add(text)
        return None
    prepared.add(name)
    return name


def _quoted(name: str) -> str:
    # Double quotes are the SQL standard identifier quotes; SQLite and PostgreSQL use them.
    return '"' + name.replace('"', '""') + '"'


def _where(model: type[BaseModel], names: tuple[str, ...], param: str) -> str:
    """Return ``a = ? AND b = ?`` for ``names``; callers reject None, which needs IS NULL."""
    fields = model._meta.fields
    return " AND ".join(f"{_quoted(fields[name].column_name)} = {param}" for name in names)


def _reject_none(equals: dict[str, Any]) -> None:
    missing = sorted(name for name, value in equals.items() if value is None)
    if missing:
        raise ValueError(f"cannot match {missing} against None with '='; use peewee's "
                         f".is_null() instead")


def insert(model: type[Row], **values: Any) -> Row:
    """Insert one row as ``model.create(**values)`` does and return the saved instance.

    Field defaults apply as in peewee. Model hooks that override ``save`` are not called
    (no maildesk model has one).
    """
    return insert_instance(model(**values))


def insert_instance(instance: Row) -> Row:
    """Insert a new, unsaved instance as its row and return it with its id set."""
    inserted = _insert(instance, skip_conflict=False)
    assert inserted
    return instance


def insert_unless_taken(model: type[Row], **values: Any) -> Row | None:
    """Insert one row unless a unique column's value is taken; return it, or None.

    One statement where a savepoint around a plain INSERT costs three, and a conflict
    leaves the transaction usable.
    """
    instance = model(**values)
    return instance if _insert(instance, skip_conflict=True) else None


def _insert(instance: BaseModel, *, skip_conflict: bool) -> bool:
    """Insert ``instance``, set its id and return True; False when a conflict skipped it."""
    database = _database()
    model = type(instance)
    data = instance.__data__
    primary_key = _primary_key(model)
    names = _set_columns(instance)

    key = ("insert", model, names, database.param, database.returning_clause, skip_conflict)
    text = _texts.get(key)
    if text is None:
        text = _insert_text(model, names, database.param)
        if skip_conflict:
            text += " ON CONFLICT DO NOTHING"
        if database.returning_clause:
            text += f" RETURNING {_quoted(primary_key.column_name)}"
        _texts[key] = text

    fields = model._meta.fields
    cursor = _execute(database, text, [fields[name].db_value(data[name]) for name in names])
    if data.get(primary_key.name) is None:
        if database.returning_clause:
            row = cursor.fetchone()
            if row is None:
                return False
            data[primary_key.name] = row[0]
        else:
            # SQLite leaves lastrowid as it was when ON CONFLICT skips the row.
            if cursor.rowcount != 1:
                return False
            data[primary_key.name] = cursor.lastrowid
    elif cursor.rowcount == 0:
        return False
    _mark_clean(instance)
    return True


def insert_later(model: type[BaseModel], **values: Any) -> None:
    """Insert one row whose id the caller does not use, as ``insert`` does, returning nothing.

    On PostgreSQL, inside a transaction, the INSERT goes to the server with the next
    statement or the COMMIT (``PostgresqlDatabase.defer``), which saves a round trip
    each. It then fails at that later statement, so use it only where nothing catches
    its error: an event, a reference, a counter row.

    NOTE: a nested ``atomic()`` sends the deferred statements with its SAVEPOINT, so
    their error is raised inside a later ``try: with atomic(): ... except
    IntegrityError`` (peewee's ``get_or_create`` reads first and is safe). That handler
    would take it for its own and go on in an aborted transaction.
    """
    database = _database()
    instance = model(**values)
    names = _set_columns(instance)
    key = ("insert_later", model, names, database.param)
    text = _texts.get(key)
    if text is None:
        text = _texts[key] = _insert_text(model, names, database.param)

    fields = model._meta.fields
    _execute_later(database, text,
                   [fields[name].db_value(instance.__data__[name]) for name in names])


def _primary_key(model: type[BaseModel]) -> pw.Field:
    primary_key = model._meta.primary_key
    assert isinstance(primary_key, pw.Field), "every maildesk model has an id column"
    return primary_key


def _set_columns(instance: BaseModel) -> tuple[str, ...]:
    """Return the fields an INSERT of ``instance`` names: all but an id still unset."""
    key = _primary_key(type(instance)).name
    data = instance.__data__
    return tuple(name for name in data if not (name == key and data[name] is None))


def _execute_later(database: pw.Database, text: str, params: list[Any]) -> None:
    """Run a cached statement whose result is not read: deferred where the database can.

    Outside a transaction it runs at once through ``_execute``, which runs it again
    unprepared when the session lost its prepared statement.
    """
    defer = getattr(database, "defer", None)
    if defer is None or not database.in_transaction():
        _execute(database, text, params)
        return
    name = _prepare(database, text) if _preparable(database, text, params) else None
    defer(text if name is None else _call(name, params), params)


def insert_missing(model: type[BaseModel], **values: Any) -> bool:
    """Insert one row unless its primary key or a unique column is taken.

    Unlike ``insert``, the caller gives every column, the key included, and no defaults
    apply. Returns True when the row was inserted.
    """
    database = _database()
    names = tuple(sorted(values))
    text = _insert_missing_text(database, model, names)
    fields = model._meta.fields
    cursor = _execute(database, text, [fields[name].db_value(values[name]) for name in names])
    return bool(cursor.rowcount == 1)


def insert_missing_later(model: type[BaseModel], **values: Any) -> None:
    """Insert one row as ``insert_missing`` does, deferred as ``insert_later`` is."""
    database = _database()
    names = tuple(sorted(values))
    text = _insert_missing_text(database, model, names)
    fields = model._meta.fields
    _execute_later(database, text, [fields[name].db_value(values[name]) for name in names])


def _insert_missing_text(database: pw.Database, model: type[BaseModel],
                         names: tuple[str, ...]) -> str:
    key = ("insert_missing", model, names, database.param)
    text = _texts.get(key)
    if text is None:
        # SQLite (3.24 and later) and PostgreSQL both accept ON CONFLICT DO NOTHING.
        text = _texts[key] = (_insert_text(model, names, database.param)
                              + " ON CONFLICT DO NOTHING")
    return text


def _insert_text(model: type[BaseModel], names: tuple[str, ...], param: str) -> str:
    """Build the INSERT of one row into the columns of the fields ``names``."""
    fields = model._meta.fields
    columns = ", ".join(_quoted(fields[name].column_name) for name in names)
    marks = ", ".join(param for _name in names)
    return f"INSERT INTO {_quoted(model._meta.table_name)} ({columns}) VALUES ({marks})"


def _mark_clean(instance: BaseModel) -> None:
    """Clear peewee's record of changed fields: the instance now matches its row."""
    dirty: set[str] = instance._dirty  # type: ignore[attr-defined]
    dirty.clear()


def first(model: type[Row], **equals: Any) -> Row | None:
    """Return one row whose fields equal ``equals`` (as ``get_or_none``), or None."""
    database = _database()
    _reject_none(equals)
    names = tuple(sorted(equals))
    key = ("first", model, names, database.param)
    text = _texts.get(key)
    fields = model._meta.sorted_fields
    if text is None:
        columns = ", ".join(_quoted(field.column_name) for field in fields)
        text = (f"SELECT {columns} FROM {_quoted(model._meta.table_name)} "
                f"WHERE {_where(model, names, database.param)} LIMIT 1")
        _texts[key] = text

    by_name = model._meta.fields
    row = _execute(
        database, text, [by_name[name].db_value(equals[name]) for name in names]).fetchone()
    if row is None:
        return None
    return _instance(model, fields, row)


def select_in(model: type[Row], name: str, values: list[Any]) -> list[Row]:
    """Return the rows whose field ``name`` is one of ``values``, in no particular order."""
    if not values:
        return []
    database = _database()
    if any(value is None for value in values):
        _reject_none({name: None})
    key = ("in", model, name, len(values), database.param)
    text = _texts.get(key)
    fields = model._meta.sorted_fields
    field = model._meta.fields[name]
    if text is None:
        columns = ", ".join(_quoted(column.column_name) for column in fields)
        marks = ", ".join(database.param for _value in values)
        text = (f"SELECT {columns} FROM {_quoted(model._meta.table_name)} "
                f"WHERE {_quoted(field.column_name)} IN ({marks})")
        _texts[key] = text

    params = [field.db_value(value) for value in values]
    # Each list length is a statement of its own, so only short lists are prepared.
    cursor = (_execute(database, text, params) if len(values) <= _PREPARED_IN_VALUES
              else database.execute_sql(text, params))
    return [_instance(model, fields, row) for row in cursor.fetchall()]


def _instance(model: type[Row], fields: list[pw.Field], row: tuple[Any, ...]) -> Row:
    """Return a saved instance of ``model`` from a row of ``fields``, as peewee makes it."""
    instance = model(__no_default__=1)
    instance.__data__ = {field.name: field.python_value(value)
                         for field, value in zip(fields, row, strict=True)}
    _mark_clean(instance)
    return instance


def exists(model: type[BaseModel], **equals: Any) -> bool:
    """Return whether a row whose fields equal ``equals`` exists."""
    database = _database()
    _reject_none(equals)
    names = tuple(sorted(equals))
    key = ("exists", model, names, database.param)
    text = _texts.get(key)
    if text is None:
        text = (f"SELECT 1 FROM {_quoted(model._meta.table_name)} "
                f"WHERE {_where(model, names, database.param)} LIMIT 1")
        _texts[key] = text

    fields = model._meta.fields
    cursor = _execute(database, text, [fields[name].db_value(equals[name]) for name in names])
    return cursor.fetchone() is not None


def update(model: type[BaseModel], row_id: int, **values: Any) -> int:
    """Set ``values`` on the row with primary key ``row_id``; return the rows changed."""
    database = _database()
    names = tuple(sorted(values))
    key = ("update", model, names, database.param)
    text = _texts.get(key)
    fields = model._meta.fields
    if text is None:
        assignments = ", ".join(f"{_quoted(fields[name].column_name)} = {database.param}"
                                for name in names)
        primary_key = model._meta.primary_key
        assert isinstance(primary_key, pw.Field), "every maildesk model has an id column"
        text = (f"UPDATE {_quoted(model._meta.table_name)} SET {assignments} "
                f"WHERE {_quoted(primary_key.column_name)} = {database.param}")
        _texts[key] = text

    params = [fields[name].db_value(values[name]) for name in names]
    cursor = _execute(database, text, [*params, row_id])
    return int(cursor.rowcount)


class Prepared:
    """A peewee query built once with placeholder values, then run with real ones.

    ``build`` takes one argument per value and returns the query. It is called once per
    database kind with marker strings, and the markers are found again among the
    parameters of the generated SQL. Values must therefore reach the SQL unchanged:
    plain comparisons work, but ``contains`` or ``startswith`` wrap the value in a
    pattern and are rejected when the query is first prepared. Pass ids, not model
    instances. Rows come back as tuples of what the driver returns (SQLite returns
    datetimes as text), so select strings and numbers.
    """

    def __init__(self, build: Callable[..., pw.Query]) -> None:
        self._build = build
        self._arity = len(inspect.signature(build).parameters)
        self._compiled: dict[str, tuple[str, list[int | None], list[Any]]] = {}

    def _prepare(self, database: pw.Database) -> tuple[str, list[int | None], list[Any]]:
        compiled = self._compiled.get(database.param)
        if compiled is not None:
            return compiled

        markers = [f"\x00maildesk-value-{index}\x00" for index in range(self._arity)]
        text, params = self._build(*markers).sql()
        slots: list[int | None] = []
        for param in params:
            slots.append(markers.index(param) if param in markers else None)
        missing = set(range(self._arity)) - {slot for slot in slots if slot is not None}
        if missing:
            raise ValueError(f"values {sorted(missing)} of a prepared query do not reach its "
                             f"SQL unchanged: {text}")
        compiled = (text, slots, list(params))
        self._compiled[database.param] = compiled
        return compiled

    def rows(self, *values: Any) -> list[tuple[Any, ...]]:
        """Run the query with ``values`` and return all rows."""
        database = _database()
        text, slots, constants = self._prepare(database)
        params = [constant if slot is None else values[slot]
                  for slot, constant in zip(slots, constants, strict=True)]
        return list(_execute(database, text, params).fetchall())

    def scalar(self, *values: Any) -> Any:
        """Run the query with ``values`` and return the first column of the first row."""
        rows = self.rows(*values)
        return rows[0][0] if rows else None
