"""An IMAP mailbox as the mail source, through imapclient.

UIDs only, fetched with ``BODY.PEEK[]`` so nothing is marked \\Seen behind our back.
Processed mail is moved to the processed folder (MOVE where the server has it, else
COPY, \\Deleted and UID EXPUNGE). UIDVALIDITY is checked against the value stored in
the database: after a change UIDs mean other mails, which is harmless because every
mail is deduplicated by Message-ID or hash anyway, but it is worth a warning. New mail is
awaited with IDLE where the server offers it, otherwise by polling.
"""

from __future__ import annotations

import imaplib
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from maildesk import models
from maildesk.config import ImapConfig
from maildesk.errors import ConfigError, SourceError
from maildesk.i18n import _, ngettext
from maildesk.models import utcnow
from maildesk.sources import FetchedMail
from maildesk.sources.retries import ReadRetries

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


# RFC 5530 response codes of a refused login that do not blame the credentials:
# UNAVAILABLE (a subsystem is down; Dovecot 2.3 when its authentication backend fails),
# LIMIT (Dovecot 2.3 past mail_max_userip_connections) and INUSE (in use elsewhere).
_TEMPORARY_LOGIN_CODES = ("[UNAVAILABLE]", "[LIMIT]", "[INUSE]")


def _is_temporary_login_failure(error: LoginError) -> bool:
    """Tell whether a failed login may succeed later with the same credentials.

    imapclient raises LoginError for any error during LOGIN or AUTHENTICATE, also for a
    connection that the server closed (BYE) or lost, which it chains as the context.
    """
    if isinstance(error.__context__, imaplib.IMAP4.abort):
        return True
    text = _server_text(error).upper()
    return any(code in text for code in _TEMPORARY_LOGIN_CODES)


class ImapSource:
    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.name = f"imap:{config.username}@{config.host}:{config.port}/{config.folder}"
        self.client: IMAPClient | None = None
        self.idle_supported = False
        self.highest_seen_uid = 0
        # UIDs that the last SEARCH found and no batch has fetched yet, in order.
        self.unfetched: list[int] = []
        self.retries = ReadRetries(self.name)
        self.uidvalidity: int | None = None

    def _connect(self) -> IMAPClient:
        """Connect, log in and select the folder.

        A rejected login, an untrusted certificate or a missing folder raises ConfigError:
        retrying cannot help until the admin changes the configuration. A login that
        failed for a passing reason (``_is_temporary_login_failure``) raises SourceError,
        to be retried.
        """
        try:
            return self._open()
        except LoginError as error:
            if _is_temporary_login_failure(error):
                raise SourceError(_("IMAP login as {user} on {host}:{port} failed temporarily "
                                    "({error})").format(
                    user=self.config.username, host=self.config.host, port=self.config.port,
                    error=_server_text(error))) from error
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

        try:
            if config.oauth2_token:
                token = config.oauth2_token.reveal() or ""
                client.oauth2_login(config.username, token)
            else:
                client.login(config.username, config.password.reveal() or "")
        except LoginError:
            # The daemon retries a temporary failure, so the connection must not stay open.
            try:
                client.shutdown()
            except CONNECTION_ERRORS:
                pass
            raise

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
        if uidvalidity != self.uidvalidity:
            # The failed fetches were counted against UIDs that now mean other mails.
            self.retries.clear()
            self.uidvalidity = uidvalidity
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

        A message that the server cannot deliver is skipped and fetched again on a
        later pass (see ``maildesk.sources.retries``). After the last failed fetch it is
        returned with ``read_error`` set, for the daemon to quarantine and move to the
        quarantine folder.
        """
        searched = False
        while True:
            if not self.unfetched:
                if searched:
                    return []
                self._search()
                searched = True
            size = self.config.batch_size
            uids, self.unfetched = self.unfetched[:size], self.unfetched[size:]
            if not uids:
                return []
            self.highest_seen_uid = max(self.highest_seen_uid, uids[-1])
            client = self.client
            batch = self._fetch_uids(uids)
            if batch:
                return batch
            # Every mail of this slice is gone or failed: an empty batch would end the pass.
            if self.client is not client:
                # A reconnect dropped the rest of the list, so search again.
                searched = False

    def _search(self) -> None:
        uids = sorted(cast(list[int], self._call(lambda client: client.search(["UNDELETED"]))))
        self.retries.keep_only(str(uid) for uid in uids)
        self.unfetched = []
        for uid in uids:
            if not self.retries.waiting(str(uid)):
                self.unfetched.append(uid)
            else:
                # Seen, so that wait() does not wake at once for it.
                self.highest_seen_uid = max(self.highest_seen_uid, uid)

    def _fetch_uids(self, uids: list[int]) -> list[FetchedMail]:
        """Fetch a slice of messages; on failure, fetch them one by one to find the bad one.

        Dovecot 2.3, for one, responds to a FETCH that includes a message it cannot read
        with BYE, which loses the whole slice.
        """
        try:
            response = cast(dict[int, dict[bytes, Any]],
                            self._call(lambda client: client.fetch(uids, ["BODY.PEEK[]"])))
        except SourceError as error:
            cause = error.__cause__
            reason = _server_text(cause if isinstance(cause, Exception) else error)
            if len(uids) == 1:
                # A server that cannot be reached at all raises SourceError here, so the
                # failure is not held against the message.
                self._call(lambda client: client.noop())
                return self._failed_fetch(uids[0], reason)
            logger.warning(_("fetching UIDs {first} to {last} from {name} failed, so each is "
                             "fetched alone: {error}").format(
                first=uids[0], last=uids[-1], name=self.name, error=reason))
            batch = []
            for uid in uids:
                batch.extend(self._fetch_uids([uid]))
            return batch

        batch = []
        for uid in uids:
            data = response.get(uid)
            raw = data.get(b"BODY[]") if data is not None else None
            if raw is None:
                # Moved away since the SEARCH, which the next SEARCH shows by leaving the
                # UID out, or a message the server cannot deliver.
                reason = (_("the FETCH response has no body for it") if data is not None
                          else _("the FETCH response leaves it out"))
                batch.extend(self._failed_fetch(uid, reason))
                continue
            self.retries.succeeded(str(uid), f"UID {uid}")
            batch.append(FetchedMail(str(uid), bytes(raw), self._source(uid)))
        return batch

    def _failed_fetch(self, uid: int, error: str) -> list[FetchedMail]:
        """Count a failed fetch of one UID; return the mail when it is given up, else []."""
        if not self.retries.failed(str(uid), error, f"UID {uid}"):
            return []
        attempts = self.retries.attempts_made(str(uid))
        read_error = ngettext(
            "cannot fetch UID {uid} ({count} attempt): {error}; it is moved to the IMAP "
            "folder {folder}",
            "cannot fetch UID {uid} ({count} attempts): {error}; it is moved to the IMAP "
            "folder {folder}", attempts).format(
            uid=uid, count=attempts, error=error, folder=self.config.quarantine_folder)
        self.retries.give_up(str(uid), read_error, f"UID {uid}")
        return [FetchedMail(str(uid), b"", self._source(uid), read_error=read_error)]

    def _source(self, uid: int) -> str:
        return f"imap:{self.config.folder}/{uid}"

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
