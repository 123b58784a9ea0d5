"""Fixtures with real servers on 127.0.0.1: Dovecot, an SMTP sink and PostgreSQL.

One Dovecot and one SMTP sink run per session. Each test gets a fresh IMAP user, a
cleared sink and, through ``database_url``, an empty SQLite file or PostgreSQL schema.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    Dovecot,
    ImapAccount,
    PostgresSchema,
    ServerStartError,
    SmtpSink,
    find_dovecot,
    new_imap_username,
    postgres_answers,
)

logger = logging.getLogger(__name__)

DATABASE_ENGINES = ("sqlite", "postgresql")
SERVER_FIXTURES = {"dovecot", "imap_account", "smtp_sink", "smtp", "postgres_schema"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=("both", *DATABASE_ENGINES),
        default="both",
        help="database engines for tests that take database_url (default: both)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # AUTH without STARTTLS makes aiosmtpd warn on every connection, from its server
    # thread. Tests choose that setting on purpose.
    config.addinivalue_line(
        "filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--database")
    engines = list(DATABASE_ENGINES) if chosen == "both" else [chosen]
    metafunc.parametrize("database_url", engines, indirect=True, ids=engines)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests that need a real server, so ``-m 'not servers'`` runs only the pure ones."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        uses_postgresql = callspec is not None and callspec.params.get("database_url") == (
            "postgresql"
        )
        if fixtures & SERVER_FIXTURES or uses_postgresql:
            item.add_marker(pytest.mark.servers)


def in_ci() -> bool:
    """Tell whether CI is set, where a missing server must fail the run rather than skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_server(reason: str) -> None:
    """Skip on a developer machine, fail loudly in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(f"{reason}; run scripts/setup-test-env.sh as root to set it up")


# --------------------------------------------------------------------------- IMAP


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the session, with STARTTLS and IMAPS on a self-signed certificate."""
    if find_dovecot() is None:
        missing_server("Dovecot is not installed (no dovecot binary in PATH or /usr/sbin)")

    # A short directory under /tmp: Dovecot's unix sockets break under pytest's deep
    # tmp_path, and mail processes running as nobody cannot enter its 0700 directories.
    server = Dovecot(tempfile.mkdtemp(prefix="dv-"), tls=True)
    try:
        server.start()
    except ServerStartError as error:
        server.cleanup()
        pytest.fail(str(error), pytrace=False)
    yield server
    server.cleanup()


@pytest.fixture
def imap_account(dovecot: Dovecot) -> ImapAccount:
    """A fresh IMAP user with an empty mailbox (INBOX, Sent, Trash)."""
    if not dovecot.running:
        # A test that stopped the server must not break the tests after it.
        dovecot.start()
    return ImapAccount(dovecot, new_imap_username())


# --------------------------------------------------------------------------- SMTP


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """One SMTP sink for the session. Tests should take the ``smtp`` fixture instead."""
    # aiosmtpd logs the AUTH-without-TLS warning per connection and a traceback for
    # every TLS handshake a test aborts on purpose.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)

    sink = SmtpSink()
    sink.start()
    yield sink
    sink.cleanup()


@pytest.fixture
def smtp(smtp_sink: SmtpSink) -> Iterator[SmtpSink]:
    """The session's SMTP sink, empty and accepting, reset again after the test."""
    smtp_sink.reset()
    yield smtp_sink
    smtp_sink.reset()


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    return postgres_answers()


@pytest.fixture
def postgres_schema(postgres_available: bool) -> Iterator[PostgresSchema]:
    """A fresh, empty schema in database ``test``, dropped with CASCADE afterwards."""
    if not postgres_available:
        missing_server(f"PostgreSQL does not answer on {POSTGRES_HOST}:{POSTGRES_PORT}")

    schema = PostgresSchema()
    schema.create()
    yield schema
    schema.drop()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database; tests taking it run once per engine (see --database)."""
    engine = request.param
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 'maildesk.sqlite3'}"

    schema: PostgresSchema = request.getfixturevalue("postgres_schema")
    return schema.url


# --------------------------------------------------------------------------- shared data


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The directory beside the repository with the mail corpora, when it exists."""
    path = Path(__file__).parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} does not exist; these tests need the shared mail corpora")
    return path


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Undo the stderr handler and INFO level that a CLI call installs on the root logger."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
