"""Real servers on 127.0.0.1 for the integration tests: Dovecot IMAP, an SMTP sink, PostgreSQL.

Plain classes without pytest, so a benchmark or an interactive session can start them too.
Dovecot and the SMTP sink listen on 127.0.0.1 only and keep their files (mail, config,
certificates) in a directory under /tmp. PostgreSQL must already be running, and each
PostgresSchema is a fresh schema in it.
"""

from __future__ import annotations

import email
import email.policy
import grp
import itertools
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from imapclient import IMAPClient

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
CLIENT_TIMEOUT = 10.0

# A unix socket path is at most 107 bytes long, and Dovecot puts sockets up to about
# 30 bytes deep under its base_dir, so the work directory must stay short.
MAX_DOVECOT_WORKDIR_LENGTH = 70


class ServerStartError(RuntimeError):
    """A test server failed to start. The message contains its captured output."""


def free_port(host: str = HOST) -> int:
    """Return a TCP port that is free on host right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Tell whether a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def make_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write cert.pem and key.pem for localhost and 127.0.0.1, valid for two days.

    The certificate is its own CA, so clients trust it with ``cafile=cert.pem``.
    """
    cert = directory / "cert.pem"
    key = directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key

    command = [
        "openssl", "req", "-x509",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]  # fmt: skip
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    except FileNotFoundError as error:
        raise ServerStartError("openssl not found; install it (apt-get install openssl)") from error
    except subprocess.CalledProcessError as error:
        output = error.stderr.decode(errors="replace")
        raise ServerStartError(f"openssl failed to create a test certificate:\n{output}") from error

    # Dovecot reads the key as root but the SMTP sink may run as anyone.
    key.chmod(0o644)
    return cert, key


def client_tls_context(cafile: Path | str) -> ssl.SSLContext:
    """Build a client context that trusts only the given self-signed test certificate."""
    return ssl.create_default_context(cafile=str(cafile))


# --------------------------------------------------------------------------- Dovecot


def find_dovecot() -> str | None:
    """Locate the dovecot binary, which Debian installs in /usr/sbin, outside a user's PATH."""
    search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("dovecot", path=search_path)


def new_imap_username() -> str:
    """Make a random user name, which Dovecot's static passdb accepts with its password."""
    return f"u{secrets.token_hex(6)}"


def imap_password(username: str) -> str:
    """Return the password that the static passdb (``password=pw-%u``) expects."""
    return f"pw-{username}"


_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class Dovecot:
    """A private Dovecot IMAP server: plain IMAP with STARTTLS and, with tls=True, IMAPS.

    Any user name logs in with the password ``pw-<name>`` and gets an empty Maildir, so
    each test can use a fresh account without a restart. As root, mail is stored as
    ``nobody``; as another user, every Dovecot process runs as that user.
    """

    def __init__(self, workdir: Path | str, *, tls: bool = False, host: str = HOST,
                 auth_outage: bool = False, max_userip_connections: int = 100) -> None:
        """``auth_outage`` lets ``fail_logins`` make a user's logins fail temporarily.

        Past ``max_userip_connections`` of one user from one address, Dovecot refuses
        the login with ``NO [LIMIT]``.
        """
        self.workdir = Path(workdir).resolve()
        if len(str(self.workdir)) > MAX_DOVECOT_WORKDIR_LENGTH:
            raise ValueError(
                f"Dovecot work directory {self.workdir} is too long for its unix sockets; "
                f"use a short one such as tempfile.mkdtemp(prefix='dv-')"
            )

        self.host = host
        self.tls = tls
        self.port = free_port(host)
        self.tls_port: int | None = free_port(host) if tls else None
        self.cafile: Path | None = None
        self.rootless = os.geteuid() != 0
        self.auth_outage = auth_outage
        self.max_userip_connections = max_userip_connections
        self._auth_down_dir = self.workdir / "auth-down"

        self._process: subprocess.Popen[bytes] | None = None
        self._output_path = self.workdir / "dovecot.out"
        self._config_path = self.workdir / "dovecot.conf"
        self._log_path = self.workdir / "dovecot.log"

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the master process and wait until the IMAP greeting arrives."""
        if self.running:
            return

        executable = find_dovecot()
        if executable is None:
            raise ServerStartError(
                "dovecot not found; install dovecot-imapd (scripts/setup-test-env.sh as root)"
            )
        self._prepare()

        command = [executable, "-F", "-c", str(self._config_path)]
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # Kill Dovecot when the test process dies without running its teardown.
            # The signal fires when the thread that called start() ends.
            command = [setpriv, "--pdeathsig", "KILL", *command]

        with self._output_path.open("ab") as output:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )

        try:
            self._wait_until_ready()
        except ServerStartError:
            self.stop()
            raise
        logger.info(
            "Dovecot started on %s:%d (IMAPS %s), pid %d, in %s",
            self.host, self.port, self.tls_port, self._process.pid, self.workdir,
        )  # fmt: skip

    def stop(self) -> None:
        """Kill the whole process group at once, because a graceful SIGTERM takes about a second."""
        process = self._process
        if process is None:
            return
        self._process = None

        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

        # Login processes also have the listening socket open. Wait until they are gone
        # so that a restart can bind the same port.
        deadline = time.monotonic() + START_TIMEOUT
        while port_answers(self.host, self.port, timeout=0.2) and time.monotonic() < deadline:
            time.sleep(0.01)
        logger.info("Dovecot stopped (pid %d)", process.pid)

    def restart(self) -> None:
        """Stop and start again on the same ports with the same mail, like a server reboot."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and delete its work directory with all mail."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _prepare(self) -> None:
        for name in ("run", "state", "mail"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)

        if self.tls and self.cafile is None:
            self.cafile, _ = make_self_signed_certificate(self.workdir)

        if not self.rootless:
            # Mail processes run as user nobody and the auth process as user dovecot, and
            # both must be able to enter the work directory.
            self.workdir.chmod(0o755)
            _check_searchable_by_others(self.workdir)
            nobody = pwd.getpwnam("nobody")
            os.chown(self.workdir / "mail", nobody.pw_uid, nobody.pw_gid)

        if self.auth_outage:
            self._write_auth_outage_script()
        self._config_path.write_text(self._config())

    def _write_auth_outage_script(self) -> None:
        """Write the checkpassword script that reports a temporary failure for marked users.

        Exit status 111 is checkpassword's temporary failure, which Dovecot 2.3 reports to
        the client as ``NO [UNAVAILABLE] Temporary authentication failure``. Status 1 (a
        wrong password) passes the login on to the static passdb.
        """
        self._auth_down_dir.mkdir(exist_ok=True)
        self._auth_down_dir.chmod(0o755)
        script = self.workdir / "auth-outage.sh"
        script.write_text(
            "#!/bin/sh\n"
            "user=$(head -c 1024 <&3 | tr '\\000' '\\n' | head -n 1)\n"
            f'if [ -e "{self._auth_down_dir}/$user" ]; then exit 111; fi\n'
            "exit 1\n"
        )
        script.chmod(0o755)

    def _config(self) -> str:
        if self.rootless:
            user = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            run_as = (
                f"default_internal_user = {user}\n"
                f"default_internal_group = {group}\n"
                f"default_login_user = {user}\n"
                "service imap-login {\n  chroot =\n}\n"
                "service anvil {\n  chroot =\n}\n"
            )
            userdb_args = f"home={self.workdir}/mail/%u"
        else:
            nobody = pwd.getpwnam("nobody")
            run_as = ""
            userdb_args = f"uid={nobody.pw_uid} gid={nobody.pw_gid} home={self.workdir}/mail/%u"

        if self.tls:
            assert self.cafile is not None
            ssl_settings = (
                f"ssl = yes\nssl_cert = <{self.cafile}\nssl_key = <{self.workdir / 'key.pem'}\n"
            )
            imaps = f"    port = {self.tls_port}\n    ssl = yes\n"
        else:
            ssl_settings = "ssl = no\n"
            imaps = "    port = 0\n"

        return (
            f"instance_name = maildesk-test-{self.port}\n"
            f"base_dir = {self.workdir}/run\n"
            f"state_dir = {self.workdir}/state\n"
            f"log_path = {self._log_path}\n"
            "protocols = imap\n"
            f"listen = {self.host}\n"
            "disable_plaintext_auth = no\n"
            "auth_mechanisms = plain login xoauth2 oauthbearer\n"
            "auth_failure_delay = 0\n"
            # Tests open many connections per user, and the default limit is 10.
            f"mail_max_userip_connections = {self.max_userip_connections}\n"
            "mail_location = maildir:~/Maildir\n"
            "mail_fsync = never\n"
            # IDLE learns of new mail from inotify; where a busy machine has run out of
            # inotify instances, Dovecot polls instead, by default every 30 s.
            "mailbox_idle_check_interval = 1 secs\n"
            f"{ssl_settings}"
            f"{run_as}"
            "namespace inbox {\n"
            "  inbox = yes\n"
            "  separator = /\n"
            "  mailbox Sent {\n    special_use = \\Sent\n    auto = subscribe\n  }\n"
            "  mailbox Trash {\n    special_use = \\Trash\n    auto = subscribe\n  }\n"
            "}\n"
            f"{self._auth_outage_passdb()}"
            "passdb {\n  driver = static\n  args = password=pw-%u\n}\n"
            f"userdb {{\n  driver = static\n  args = {userdb_args}\n}}\n"
            "service imap-login {\n"
            f"  inet_listener imap {{\n    address = {self.host}\n    port = {self.port}\n  }}\n"
            f"  inet_listener imaps {{\n    address = {self.host}\n{imaps}  }}\n"
            "}\n"
            # Without this, every failed login from 127.0.0.1 delays the next logins
            # (0.5 s, 4.5 s, 8.5 s, 15.5 s), which makes later tests time out.
            "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
        )

    def _auth_outage_passdb(self) -> str:
        if not self.auth_outage:
            return ""
        return (
            "passdb {\n  driver = checkpassword\n"
            f"  args = {self.workdir / 'auth-outage.sh'}\n"
            "  result_failure = continue\n  result_internalfail = return-fail\n}\n"
        )

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(
                    f"Dovecot exited with status {self._process.returncode} at start\n"
                    f"{self._diagnostics()}"
                )
            if self._greets(self.port) and (
                self.tls_port is None or port_answers(self.host, self.tls_port, timeout=0.2)
            ):
                return
            time.sleep(0.02)
        raise ServerStartError(
            f"Dovecot did not greet on {self.host}:{self.port} within {START_TIMEOUT} s\n"
            f"{self._diagnostics()}"
        )

    def _greets(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=1.0) as connection:
                return connection.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def _diagnostics(self) -> str:
        parts = []
        for path in (self._output_path, self._log_path):
            if path.exists():
                text = path.read_text(errors="replace")[-4000:]
                parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts) or "(Dovecot wrote no output)"

    # -- mailbox helpers, each on a fresh connection

    def password(self, username: str) -> str:
        return imap_password(username)

    @contextmanager
    def client(
        self, username: str, *, tls: bool = False, starttls: bool = False
    ) -> Iterator[IMAPClient]:
        """Open a logged-in IMAPClient: on the IMAPS port with tls, after STARTTLS with starttls."""
        if (tls or starttls) and self.cafile is None:
            raise ValueError("this Dovecot was started without tls=True")

        if tls:
            assert self.tls_port is not None and self.cafile is not None
            imap = IMAPClient(
                self.host,
                port=self.tls_port,
                ssl=True,
                ssl_context=client_tls_context(self.cafile),
                timeout=CLIENT_TIMEOUT,
            )
        else:
            imap = IMAPClient(self.host, port=self.port, ssl=False, timeout=CLIENT_TIMEOUT)

        try:
            if starttls:
                assert self.cafile is not None
                imap.starttls(client_tls_context(self.cafile))
            imap.login(username, self.password(username))
            yield imap
        finally:
            try:
                imap.logout()
            except (OSError, IMAPClient.Error, IMAPClient.AbortError):
                # The test may have restarted the server under this connection.
                _close_quietly(imap)

    def fail_logins(self, username: str) -> None:
        """Make the user's logins fail temporarily until ``restore_logins`` is called."""
        if not self.auth_outage:
            raise ValueError("this Dovecot was started without auth_outage=True")
        (self._auth_down_dir / username).touch()

    def restore_logins(self, username: str) -> None:
        (self._auth_down_dir / username).unlink(missing_ok=True)

    def append(self, username: str, raw: bytes, folder: str = "INBOX") -> int:
        """Store one raw message and return its UID, creating the folder when it is missing."""
        with self.client(username) as imap:
            if not imap.folder_exists(folder):
                imap.create_folder(folder)
            response = imap.append(folder, raw)

        match = _APPENDUID.search(response)
        if match is None:
            raise RuntimeError(f"APPEND to {folder} returned no APPENDUID: {response!r}")
        return int(match.group(1))

    def messages(self, username: str, folder: str = "INBOX") -> dict[int, bytes]:
        """Return the raw bytes of every message by UID, without setting \\Seen."""
        with self.client(username) as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search("ALL")
            fetched = imap.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return {uid: fetched[uid][b"BODY[]"] for uid in sorted(fetched)}

    def flags(self, username: str, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        """Return the flags and keywords of every message by UID."""
        with self.client(username) as imap:
            imap.select_folder(folder, readonly=True)
            uids = imap.search("ALL")
            found = imap.get_flags(uids) if uids else {}
        return {uid: tuple(found[uid]) for uid in sorted(found)}

    def folders(self, username: str) -> list[str]:
        """Return the names of all folders of the user, INBOX included."""
        with self.client(username) as imap:
            return [name for _flags, _delimiter, name in imap.list_folders()]


def _close_quietly(imap: IMAPClient) -> None:
    try:
        imap.shutdown()
    except OSError:
        pass


def _check_searchable_by_others(directory: Path) -> None:
    for path in [directory, *directory.parents]:
        if not path.stat().st_mode & stat.S_IXOTH:
            raise ValueError(
                f"{path} is not searchable by other users, so Dovecot's mail processes "
                f"(user nobody) cannot reach {directory}; use a directory under /tmp"
            )


@dataclass(frozen=True)
class ImapAccount:
    """One user on a test Dovecot, with the connection data a maildesk config needs."""

    server: Dovecot
    username: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def tls_port(self) -> int | None:
        return self.server.tls_port

    @property
    def cafile(self) -> Path | None:
        return self.server.cafile

    @property
    def password(self) -> str:
        return self.server.password(self.username)

    def client(
        self, *, tls: bool = False, starttls: bool = False
    ) -> AbstractContextManager[IMAPClient]:
        """Open a logged-in IMAPClient as a context manager."""
        return self.server.client(self.username, tls=tls, starttls=starttls)

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        return self.server.append(self.username, raw, folder)

    def messages(self, folder: str = "INBOX") -> dict[int, bytes]:
        return self.server.messages(self.username, folder)

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        return self.server.flags(self.username, folder)

    def folders(self) -> list[str]:
        return self.server.folders(self.username)


# --------------------------------------------------------------------------- SMTP sink


@dataclass(frozen=True)
class Delivery:
    """One mail accepted by the sink, as the envelope and the bytes after DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage
    auth_login: str | None
    tls: bool


FailureStage = Literal["mail", "rcpt", "data"]


class _SinkHandler:
    """aiosmtpd hooks that apply the sink's current behaviour to each command."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.sink.temporary_failure == "mail":
            return "451 4.3.0 Temporary failure, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.sink.temporary_failure == "rcpt":
            return "451 4.7.1 Greylisted, try again later"
        if address.lower() in self.sink.rejected_recipients:
            return f"550 5.1.1 <{address}>: Recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.sink.temporary_failure == "data":
            return "451 4.3.0 Error in processing, try again later"

        data = envelope.original_content
        if data is None:
            content = envelope.content or b""
            data = content.encode() if isinstance(content, str) else content
        auth_login = None
        if isinstance(session.auth_data, LoginPassword):
            auth_login = session.auth_data.login.decode(errors="replace")
        tls = (
            session.ssl is not None
            or server.transport is not None
            and (server.transport.get_extra_info("ssl_object") is not None)
        )

        delivery = Delivery(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message=_parse(data),
            auth_login=auth_login,
            tls=bool(tls),
        )
        queue_id = self.sink.record(delivery)
        return f"250 2.0.0 OK: queued as {queue_id}"


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class SmtpSink:
    """An aiosmtpd server that records every mail and can be switched to failure modes.

    Settings that change the SMTP dialogue itself (AUTH, STARTTLS, implicit TLS) restart
    the listener on the same port. The others take effect on the next command.
    """

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        host: str = HOST,
        server_hostname: str = "sink.maildesk.test",
    ) -> None:
        self.host = host
        self.server_hostname = server_hostname
        self.port = free_port(host)
        self.rejected_recipients: set[str] = set()
        self.temporary_failure: FailureStage | None = None

        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir is not None else None
        self._auth: tuple[str, str] | None = None
        self._starttls = False
        self._require_starttls = False
        self._implicit_tls = False
        self._cafile: Path | None = None
        self._key: Path | None = None

        self._controller: Controller | None = None
        self._deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        self._queue_ids = itertools.count(1)

    # -- lifecycle

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is not None:
            return

        kwargs: dict[str, Any] = {}
        tls_context = self._server_tls_context() if self._uses_tls else None
        if self._starttls:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = self._require_starttls
        if self._auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # Plain AUTH is allowed unless STARTTLS is on, as on a typical port 587.
            kwargs["auth_require_tls"] = self._starttls

        controller = Controller(
            _SinkHandler(self),
            hostname=self.host,
            port=self.port,
            server_hostname=self.server_hostname,
            ready_timeout=START_TIMEOUT,
            ssl_context=tls_context if self._implicit_tls else None,
            **kwargs,
        )
        try:
            controller.start()
        except Exception:
            # The listener thread may still run and hold the port after a failed start.
            controller.stop(no_assert=True)
            if not controller.loop.is_closed():
                controller.loop.close()
            raise
        self._controller = controller
        logger.info("SMTP sink listening on %s:%d (%s)", self.host, self.port, self._describe())

    def stop(self) -> None:
        controller = self._controller
        if controller is None:
            return
        self._controller = None
        controller.stop()
        logger.info("SMTP sink on %s:%d stopped", self.host, self.port)

    def cleanup(self) -> None:
        """Stop the sink and delete the certificate directory it created itself."""
        self.stop()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._cafile = self._key = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- behaviours

    def down(self) -> None:
        """Stop listening, so new connections are refused, until up() is called."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        self.start()

    def reject(self, *addresses: str) -> None:
        """Reject RCPT TO for these addresses with 550 (user unknown)."""
        self.rejected_recipients.update(address.lower() for address in addresses)

    def fail_temporarily(self, stage: FailureStage | None = "mail") -> None:
        """Reply 451 at this stage (MAIL, RCPT or DATA) of every transaction. None ends it."""
        self.temporary_failure = stage

    def configure(
        self,
        *,
        auth: tuple[str, str] | None = None,
        starttls: bool = False,
        require_starttls: bool = False,
        implicit_tls: bool = False,
    ) -> None:
        """Set AUTH credentials (login, password) and TLS mode, restarting the listener.

        With both auth and starttls, AUTH is offered only after STARTTLS.
        """
        if implicit_tls and starttls:
            raise ValueError("choose STARTTLS or implicit TLS, not both")
        if require_starttls and not starttls:
            raise ValueError("require_starttls needs starttls=True")

        self._auth = auth
        self._starttls = starttls
        self._require_starttls = require_starttls
        self._implicit_tls = implicit_tls
        if self._controller is not None:
            self.stop()
            self.start()

    def reset(self) -> None:
        """Return to plain, accepting SMTP with no recorded mail."""
        self.rejected_recipients.clear()
        self.temporary_failure = None
        if self._auth is not None or self._uses_tls:
            self.configure()
        self.up()
        self.clear()

    @property
    def cafile(self) -> Path | None:
        """The self-signed certificate clients must trust; None until TLS is configured."""
        return self._cafile

    # -- recorded mail

    def record(self, delivery: Delivery) -> int:
        with self._changed:
            self._deliveries.append(delivery)
            self._changed.notify_all()
        return next(self._queue_ids)

    @property
    def deliveries(self) -> list[Delivery]:
        """A copy of the mail received since the last clear(), oldest first."""
        with self._changed:
            return list(self._deliveries)

    def clear(self) -> None:
        with self._changed:
            self._deliveries.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Wait until at least count mails have arrived, for tests of a background sender.

        Raises TimeoutError with the number received. It is not meant for timing assertions.
        """
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._deliveries) >= count, timeout)
            if not arrived:
                raise TimeoutError(
                    f"SMTP sink received {len(self._deliveries)} of {count} mails in {timeout} s"
                )
            return list(self._deliveries)

    # -- internals

    @property
    def _uses_tls(self) -> bool:
        return self._starttls or self._implicit_tls

    def _server_tls_context(self) -> ssl.SSLContext:
        if self._cafile is None or self._key is None:
            if self._workdir is None:
                self._workdir = Path(tempfile.mkdtemp(prefix="smtp-"))
            self._cafile, self._key = make_self_signed_certificate(self._workdir)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self._cafile, self._key)
        return context

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        expected = self._auth
        success = (
            expected is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login == expected[0].encode()
            and auth_data.password == expected[1].encode()
        )
        # Without auth_data here, aiosmtpd leaves session.auth_data empty after success.
        return AuthResult(success=success, handled=False, auth_data=auth_data if success else None)

    def _describe(self) -> str:
        parts = []
        if self._auth is not None:
            parts.append("AUTH required")
        if self._starttls:
            parts.append("STARTTLS required" if self._require_starttls else "STARTTLS")
        if self._implicit_tls:
            parts.append("implicit TLS")
        return ", ".join(parts) or "plain"


# --------------------------------------------------------------------------- PostgreSQL

POSTGRES_HOST = HOST
POSTGRES_PORT = 5432
POSTGRES_USER = "postgres"
POSTGRES_DATABASE = "test"


def postgres_answers(host: str = POSTGRES_HOST, port: int = POSTGRES_PORT) -> bool:
    """Tell whether something accepts TCP connections where PostgreSQL should run."""
    return port_answers(host, port, timeout=1.0)


class PostgresSchema:
    """A throwaway schema with a random name in an existing PostgreSQL database.

    The URL names the schema as ``?schema=<name>``, and maildesk sets search_path from it.
    """

    def __init__(
        self,
        *,
        host: str = POSTGRES_HOST,
        port: int = POSTGRES_PORT,
        user: str = POSTGRES_USER,
        database: str = POSTGRES_DATABASE,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.database = database
        self.name = f"test_{secrets.token_hex(6)}"

    @property
    def url(self) -> str:
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}?schema={self.name}"
        )

    def connect(self, *, in_schema: bool = True) -> Any:
        """Open a psycopg2 connection in autocommit mode, with search_path set to the schema."""
        import psycopg2

        options = f"-c search_path={self.name}" if in_schema else ""
        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=self.database,
            options=options,
            connect_timeout=10,
        )
        connection.autocommit = True
        return connection

    def create(self) -> str:
        """Create the schema and return its URL."""
        self._execute(f'CREATE SCHEMA "{self.name}"')
        logger.info("created PostgreSQL schema %s", self.name)
        return self.url

    def drop(self) -> None:
        """Drop the schema with everything in it. Dropping a missing schema is not an error."""
        self._execute(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        logger.info("dropped PostgreSQL schema %s", self.name)

    def exists(self) -> bool:
        rows = self._query("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.name])
        return bool(rows)

    def tables(self) -> list[str]:
        rows = self._query(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
            [self.name],
        )
        return [row[0] for row in rows]

    def _execute(self, statement: str) -> None:
        connection = self.connect(in_schema=False)
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def _query(self, query: str, parameters: Iterable[Any]) -> list[tuple[Any, ...]]:
        connection = self.connect(in_schema=False)
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, list(parameters))
                return list(cursor.fetchall())
        finally:
            connection.close()
