"""Reasons for outcomes and audit events, kept so that each reader sees them in their language.

A ``Reason`` is the English text, so logs, tests and code that treat it as a ``str`` keep
working, and it also carries the gettext msgid and the fields it was formatted with.
``tickets.record_event`` stores both in the event's detail, and ``reason_text`` shows a
stored reason in the current language. Rows written before reasons carried a msgid are
shown with their stored text.
"""

from __future__ import annotations

import gettext
from typing import Any

from maildesk.i18n import N_, _, current_language, gettext_for, translated_label

# The key next to "reason" in an event's JSON detail: {"msgid": ..., "args": {...}}.
DETAIL_KEY = "reason_i18n"


class Reason(str):
    """English reason text with the msgid and fields to translate it later."""

    msgid: str
    args: dict[str, Any]
    # The pgettext context of the msgid, for words whose translation depends on what
    # they qualify (Polish "wysoki" for impact, "wysoka" for urgency).
    context: str | None = None

    def __new__(cls, msgid: str, **args: Any) -> Reason:
        self = super().__new__(cls, msgid.format(**args))
        self.msgid = msgid
        self.args = args
        return self

    @classmethod
    def in_context(cls, context: str, msgid: str) -> Reason:
        """Return a reason translated with ``pgettext(context, msgid)``."""
        reason = cls(msgid)
        reason.context = context
        return reason

    def to_json(self) -> dict[str, Any]:
        stored: dict[str, Any] = {
            "msgid": self.msgid,
            "args": {name: value.to_json() if isinstance(value, Reason) else value
                     for name, value in self.args.items()}}
        if self.context:
            stored["context"] = self.context
        return stored

    def translated(self) -> str:
        """Format the reason in the current language."""
        return _translate(self.to_json(), str(self))

    def in_language(self, language: str) -> str:
        """Format the reason in ``language``, e.g. the language of the mail it goes into."""
        return _translate(self.to_json(), str(self), gettext_for(language))


def _translate(stored: Any, fallback: str,
               translations: gettext.NullTranslations | None = None) -> str:
    """Format a stored ``{"msgid", "args"}`` pair, else return ``fallback``.

    ``translations`` is the current language's catalog unless the caller passes another.
    """
    if not isinstance(stored, dict) or not isinstance(stored.get("msgid"), str):
        return fallback
    catalog = translations or gettext_for(current_language())
    args = stored.get("args")
    args = args if isinstance(args, dict) else {}
    values = {name: _translate(value, str(value), catalog) if isinstance(value, dict)
              else value for name, value in args.items()}
    context = stored.get("context")
    if isinstance(context, str):
        text = catalog.pgettext(context, stored["msgid"])
    else:
        text = catalog.gettext(stored["msgid"])
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):  # a catalog that does not fit the stored fields
        return fallback


def localized(reason: str) -> str:
    """Return ``reason`` in the current language if it is a Reason, else unchanged."""
    return reason.translated() if isinstance(reason, Reason) else reason


def detail_fields(reason: str) -> dict[str, Any]:
    """Return the event detail entries that store ``reason``."""
    if isinstance(reason, Reason):
        return {"reason": str(reason), DETAIL_KEY: reason.to_json()}
    return {"reason": reason}


def reason_text(detail: dict[str, Any]) -> str:
    """Return the reason stored in an event's detail in the current language."""
    stored = detail.get("reason")
    fallback = stored if isinstance(stored, str) else ""
    return _translate(detail.get(DETAIL_KEY), fallback)


def message_kind_label(kind: str) -> str:
    """Name a kind of ticket entry (``customer``, ``auto_reply``, ...) for an admin."""
    labels = {
        "customer": _("user's message"),
        "auto_reply": _("automatic reply"),
        "agent_reply": _("agent's reply"),
        "internal_note": _("internal note"),
        "held": _("held message"),
        "discarded": _("discarded held message"),
        "system": _("system message"),
    }
    return labels.get(kind, kind)


# The outcomes of processing a mail, as the daemon's summary counts them.
_OUTCOMES = {
    "create": N_("new tickets"),
    "append": N_("added to tickets"),
    "ignore": N_("ignored mails"),
    "quarantined": N_("mails in quarantine"),
    "duplicate": N_("duplicates"),
}


def outcome_label(action: str) -> str:
    """Name an outcome of processing a mail, as counted in the daemon's summary."""
    return translated_label(_OUTCOMES, action)


def outcome_text(action: str, ticket: int | None, reason: str) -> str:
    """Describe the outcome of one processed mail for an admin, as ``deliver`` prints it."""
    reason = localized(reason)
    if action == "create":
        return _("ticket {ticket} created ({reason})").format(ticket=ticket, reason=reason)
    if action == "append":
        return _("added to ticket {ticket} ({reason})").format(ticket=ticket, reason=reason)
    if action == "ignore":
        return _("ignored ({reason})").format(reason=reason)
    if action == "quarantined":
        return _("quarantined ({reason})").format(reason=reason)
    if action == "duplicate":
        return _("duplicate, not processed again ({reason})").format(reason=reason)
    return f"{action}: {reason}"

