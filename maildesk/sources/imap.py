"""An IMAP mailbox as the mail source, through imapclient.

UIDs only, fetched with ``BODY.PEEK[]`` so nothing is marked \\Seen behind our back.
Processed mail is moved to the processed folder (MOVE where the server has it, else
COPY, \\Deleted and UID EXPUNGE). UIDVALIDITY is checked against the value stored in
the database: after a change UIDs mean other mails, which is harmless because every
mail is deduplicated by Message-ID or hash anyway, but it is worth a warning. New mail is
awaited with IDLE where the server offers it, otherwise by polling.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from maildesk import models
from maildesk.config import ImapConfig
from maildesk.errors import ConfigError, SourceError
from maildesk.i18n import _
from maildesk.models import utcnow
from maildesk.sources import FetchedMail

logger = logging.getLogger(__name__)

# Servers drop IDLE after 30 minutes (RFC 2177); renew well before that.
IDLE_RENEW_SECONDS = 25 * 60
CONNECTION_ERRORS = (IMAPClientError, OSError, socket.timeout, ssl.SSLError, EOFError)


def _server_text(error: Exception) -> str:
    """Return the server's response in an imapclient error as text, not as a bytes repr."""
    text = str(error)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return text


class ImapSource:
    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.name = f"imap:{config.username}@{config.host}:{config.port}/{config.folder}"
        self.client: IMAPClient | None = None
        self.idle_supported = False
        self.highest_seen_uid = 0
        # UIDs that the last SEARCH found and no batch has fetched yet, in order.
        self.unfetched: list[int] = []

    def _connect(self) -> IMAPClient:
        """Connect, log in and select the folder.

        A rejected login, an untrusted certificate or a missing folder raises ConfigError:
        retrying cannot help until the admin changes the configuration.
        """
        try:
            return self._open()
        except LoginError as error:
            raise ConfigError(_("IMAP login as {user} on {host}:{port} was rejected ({error}): "
                                "check the username and the password or token setting")
                              .format(user=self.config.username, host=self.config.host,
                                      port=self.config.port, error=_server_text(error))
                              ) from error
        except ssl.SSLCertVerificationError as error:
            raise ConfigError(_("the certificate of {host}:{port} is not trusted ({error}): "
                                "set source.ca_file to the CA certificate that signed it")
                              .format(host=self.config.host, port=self.config.port,
                                      error=error.verify_message)) from error

    def _open(self) -> IMAPClient:
        config = self.config
        context = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file else None)
        client = IMAPClient(config.host, port=config.port, ssl=config.security == "tls",
                            ssl_context=context if config.security == "tls" else None,
                            timeout=config.timeout)
        if config.security == "starttls":
            client.starttls(context)

        if config.oauth2_token:
            token = config.oauth2_token.reveal() or ""
            client.oauth2_login(config.username, token)
        else:
            client.login(config.username, config.password.reveal() or "")

        for folder in (config.processed_folder, config.quarantine_folder):
            if not client.folder_exists(folder):
                client.create_folder(folder)
        if not client.folder_exists(config.folder):
            names = sorted(str(entry[2]) for entry in client.list_folders())
            client.logout()
            raise ConfigError(_("IMAP folder '{folder}' does not exist on {host}: the folders "
                                "are {folders}; set source.folder to one of them").format(
                folder=config.folder, host=config.host, folders=", ".join(names)))
        status = client.select_folder(config.folder)
        self._check_uidvalidity(int(status[b"UIDVALIDITY"]))
        self.idle_supported = config.idle and client.has_capability("IDLE")
        logger.info(_("connected to {name} (IDLE: {idle})").format(
            name=self.name, idle=_("yes") if self.idle_supported else _("no")))
        return client

    def _check_uidvalidity(self, uidvalidity: int) -> None:
        # UIDs of a new connection are compared and searched afresh.
        self.highest_seen_uid = 0
        self.unfetched = []
        state, _created = models.MailboxState.get_or_create(name=self.name)
        if state.uidvalidity is not None and state.uidvalidity != uidvalidity:
            logger.warning(_("UIDVALIDITY of {name} changed from {old} to {new}: the mailbox "
                             "was rebuilt; mail already processed will be skipped by "
                             "Message-ID").format(name=self.name, old=state.uidvalidity,
                                                  new=uidvalidity))
        models.MailboxState.update(uidvalidity=uidvalidity, updated_at=utcnow()).where(
            models.MailboxState.id == state.id).execute()

    def _ensure(self) -> IMAPClient:
        if self.client is None:
            try:
                self.client = self._connect()
            except CONNECTION_ERRORS as error:
                self.client = None
                raise SourceError(_("cannot connect to {name}: {error}").format(
                    name=self.name, error=error)) from error
        return self.client

    def _call(self, action: Callable[[IMAPClient], object]) -> object:
        client = self._ensure()
        try:
            return action(client)
        except CONNECTION_ERRORS as error:
            self.close()
            raise SourceError(_("IMAP error on {name}: {error}").format(
                name=self.name, error=error)) from error

    def fetch(self) -> list[FetchedMail]:
        """Return the next batch of mail; SEARCH only when the last one's UIDs are used up.

        One SEARCH per backlog instead of one per batch: its response lists every UID in
        the folder, so searching before each batch of a 50,000-mail backlog would parse
        about 25 million UIDs. Mail that arrives meanwhile, or that a failed batch left
        behind, is found by the SEARCH after the list runs out. A slice whose mails were
        all moved away meanwhile is skipped, so only an empty folder ends a pass.
        """
        def run(client: IMAPClient) -> list[FetchedMail]:
            searched = False
            while True:
                if not self.unfetched:
                    if searched:
                        return []
                    self.unfetched = sorted(client.search(["UNDELETED"]))
                    searched = True
                size = self.config.batch_size
                uids, self.unfetched = self.unfetched[:size], self.unfetched[size:]
                if not uids:
                    return []
                self.highest_seen_uid = max(self.highest_seen_uid, uids[-1])
                response = client.fetch(uids, ["BODY.PEEK[]"])
                batch = []
                for uid in uids:
                    data = response.get(uid, {})
                    raw = data.get(b"BODY[]")
                    if raw is None:
                        continue  # moved or expunged since the SEARCH
                    batch.append(FetchedMail(str(uid), bytes(raw),
                                             f"imap:{self.config.folder}/{uid}"))
                if batch:
                    return batch
                # Every mail of this slice is gone: an empty batch would end the pass.

        return self._call(run)  # type: ignore[return-value]

    def _move(self, mails: list[FetchedMail], folder: str) -> None:
        uids = [int(mail.ref) for mail in mails]

        def run(client: IMAPClient) -> None:
            if client.has_capability("MOVE"):
                client.move(uids, folder)
                return
            client.copy(uids, folder)
            client.add_flags(uids, [b"\\Deleted"])
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)
            else:
                client.expunge()

        self._call(run)

    def acknowledge(self, mail: FetchedMail) -> None:
        self._move([mail], self.config.processed_folder)

    def acknowledge_many(self, mails: list[FetchedMail]) -> None:
        """Move a whole processed batch with one command: one round trip instead of one per mail."""
        if mails:
            self._move(mails, self.config.processed_folder)

    def quarantine(self, mail: FetchedMail) -> None:
        self._move([mail], self.config.quarantine_folder)

    def wait(self, timeout: float, should_stop: Callable[[], bool]) -> None:
        """Wait with IDLE (checking ``should_stop`` every second) or by polling."""
        client = self._ensure()
        deadline = time.monotonic() + min(timeout, IDLE_RENEW_SECONDS)
        if not self.idle_supported:
            while time.monotonic() < deadline and not should_stop():
                time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
            return

        try:
            # Mail that arrived between the last fetch and IDLE raises no new EXISTS, so look
            # for UIDs above the highest one seen before going idle.
            untagged = client._imap.untagged_responses
            untagged.pop("EXISTS", None)
            uids = client.search(["UNDELETED"])
            # Mail that arrives while the server runs the SEARCH, after it has chosen the
            # results, comes as an EXISTS in the SEARCH response (RFC 3501, 5.2). IDLE does
            # not report it again, so without this check the mail waits for the next wake-up.
            arrived_during_search = untagged.pop("EXISTS", None) is not None
            newest = max(uids, default=0)
            if newest > self.highest_seen_uid:
                self.highest_seen_uid = newest
                return
            if arrived_during_search:
                logger.debug("new mail arrived during the SEARCH before IDLE on %s", self.name)
                return
            client.idle()
            try:
                while time.monotonic() < deadline and not should_stop():
                    responses = client.idle_check(timeout=1)
                    if any(item[1] in (b"EXISTS", b"RECENT") for item in responses
                           if isinstance(item, tuple) and len(item) > 1):
                        return
            finally:
                client.idle_done()
        except CONNECTION_ERRORS as error:
            self.close()
            raise SourceError(_("IMAP IDLE on {name} failed: {error}").format(
                name=self.name, error=error)) from error

    def close(self) -> None:
        self.unfetched = []
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            client.logout()
        except CONNECTION_ERRORS:
            try:
                client.shutdown()
            except CONNECTION_ERRORS:
                pass
