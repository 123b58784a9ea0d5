"""The exceptions maildesk raises on purpose; each message names the value and the fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


class MaildeskError(Exception):
    """Base class of every error maildesk raises on purpose."""


class ConfigError(MaildeskError):
    """The configuration (or a rules or template file) is invalid.

    ``location`` is ``file:line`` (or ``file:line:column``) when the position is known.
    """

    def __init__(self, message: str, location: str | None = None) -> None:
        self.location = location
        self.message = message
        super().__init__(f"{location}: {message}" if location else message)


class ConfigErrors(ConfigError):
    """Several mistakes of one configuration file, each a ConfigError with its location.

    The text is one line per mistake, so a caller that prints a ConfigError prints them all.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(error) for error in errors))


class ConfigErrorCollector:
    """The mistakes found while a configuration is read, so that one run reports them all.

    ``read`` runs one reader and keeps its ConfigError (or each one of a ConfigErrors) in
    place of stopping; ``raise_errors`` raises what was kept.
    """

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def read(self, reader: Callable[[], _T], default: _T) -> _T:
        """Return what ``reader`` returns, or ``default`` after keeping its mistakes."""
        try:
            return reader()
        except ConfigErrors as errors:
            self.errors.extend(errors.errors)
        except ConfigError as error:
            self.errors.append(error)
        return default

    def raise_errors(self) -> None:
        """Raise the one mistake kept, or ConfigErrors with several; do nothing without any."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


class ParseError(MaildeskError):
    """Raw bytes could not be read as an RFC 5322 message at all."""


class TemporaryError(MaildeskError):
    """A failure worth retrying later: a server is down or the database is locked."""


class DeliveryError(MaildeskError):
    """An outgoing mail could not be handed to the SMTP server."""

    def __init__(self, message: str, permanent: bool = False, code: int | None = None) -> None:
        self.permanent = permanent
        self.code = code
        super().__init__(message)


class SourceError(TemporaryError):
    """The mail source (IMAP server, Maildir) failed; the fetch is retried."""
