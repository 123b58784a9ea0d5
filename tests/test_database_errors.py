"""What the admin reads when SQLite fails: the first error, and what to do about it."""

from __future__ import annotations

from pathlib import Path

import peewee as pw
import pytest
from deskfactory import mail, make_desk

from maildesk import databaseerrors, models, pipeline
from maildesk.errors import TemporaryError
from maildesk.i18n import current_language, set_language


def _desk(tmp_path: Path):
    """Open a desk on a SQLite file; its messages in English."""
    desk = make_desk(tmp_path, f"sqlite:///{tmp_path / 'maildesk.sqlite3'}",
                     language="en")
    set_language("en")
    return desk


@pytest.fixture(autouse=True)
def _keep_language():
    previous = current_language()
    yield
    set_language(previous)


def test_full_database_names_cause_not_rollback(tmp_path: Path) -> None:
    desk = _desk(tmp_path)
    database = models.database_proxy.obj
    # SQLite reports a full disk the same way when the file reaches max_page_count.
    pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
    database.execute_sql(f"PRAGMA max_page_count = {pages}")
    body = "Dzień dobry,\n" + "drukarka nie drukuje.\n" * 3000

    with pytest.raises(TemporaryError) as raised, models.deferred_durability():
        pipeline.process(desk, mail(body=body), "test")

    text = str(raised.value)
    assert "cannot rollback" not in text
    assert "database or disk is full" in text
    assert f"the file system of {tmp_path} has no free space left" in text


def test_cleanup_error_shows_first_error(tmp_path: Path) -> None:
    _desk(tmp_path)
    try:
        try:
            raise pw.OperationalError("database or disk is full")
        except pw.OperationalError:
            # As peewee's failed ROLLBACK does: the first error is only its context.
            raise pw.OperationalError(  # noqa: B904
                "cannot rollback - no transaction is active")
    except pw.OperationalError as error:
        text = databaseerrors.describe(error)

    assert text.startswith("database or disk is full (")


@pytest.mark.parametrize(("error", "expected"), [
    ("attempt to write a readonly database", "maildesk.sqlite3-shm"),
    ("unable to open database file", "may read and write"),
    ("database is locked", "for more than 10 s"),
    ("database disk image is malformed", "restore it from a backup"),
    ("file is not a database", "restore it from a backup"),
])
def test_sqlite_errors_say_what_to_do(tmp_path: Path, error: str,
                                      expected: str) -> None:
    _desk(tmp_path)

    text = databaseerrors.describe(pw.OperationalError(error))

    assert text.startswith(f"{error} (")
    assert expected in text
    assert str(tmp_path) in text


def test_unknown_error_text_unchanged(tmp_path: Path) -> None:
    _desk(tmp_path)

    assert databaseerrors.describe(pw.OperationalError("no such table: x")) == (
        "no such table: x")


def test_damaged_database_keeps_mail_for_retry(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    desk = _desk(tmp_path)

    def damaged(*args: object, **kwargs: object) -> object:
        # What SQLite raises when it reads a page that a copy over the file broke.
        raise pw.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(pipeline, "apply", damaged)

    with pytest.raises(TemporaryError) as raised:
        pipeline.process(desk, mail(), "test")

    assert "database disk image is malformed" in str(raised.value)
    assert "restore it from a backup" in str(raised.value)
