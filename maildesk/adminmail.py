"""Mail to the desk's admins about problems they must fix (broken rules, for example)."""

from __future__ import annotations

import logging
from typing import Any

from maildesk.desk import Desk
from maildesk.i18n import _
from maildesk.mailbuild import Recipient
from maildesk.models import database_proxy
from maildesk.notify import desk_context, queue_mail

logger = logging.getLogger(__name__)


def mail_admins(desk: Desk, template: str, context: dict[str, Any], kind: str) -> bool:
    """Queue one mail to every admin address; return False when none is configured."""
    admins = [Recipient(address) for address in desk.config.desk.admin_addresses]
    if not admins:
        logger.warning(_("desk.admin_addresses is empty, so the {kind} mail to the admins is "
                         "not sent").format(kind=kind))
        return False
    with database_proxy.atomic():
        queue_mail(desk, template=template, language=desk.config.language,
                   context={"desk": desk_context(desk), **context}, to=admins, ticket=None,
                   automatic=True, kind=kind)
    return True


def rules_error_context(desk: Desk, errors: list[Any], fallback: str) -> dict[str, Any]:
    """Build the ``rules_error`` context: the errors, the rules used meanwhile, the check."""
    return {"rules_error": {
        "count": len(errors),
        "directory": str(desk.config.rules_path),
        "errors": [str(error) for error in errors],
        "fallback": fallback,
        "check_command": f"maildesk --config {desk.config.path} rules check",
    }}


def templates_error_context(desk: Desk, errors: list[Any]) -> dict[str, Any]:
    """Build the ``templates_error`` context: the errors and the command that checks them."""
    return {"templates_error": {
        "count": len(errors),
        "directory": str(desk.config.templates_path),
        "errors": [str(error) for error in errors],
        "check_command": f"maildesk --config {desk.config.path} templates check",
    }}


def sample_values() -> dict[str, Any]:
    """Sample values of the admin templates, for ``maildesk templates check``."""
    from maildesk.orphans import sample_values as orphan_samples

    return {**orphan_samples(), "rules_error": {
        "count": 1,
        "directory": "/etc/maildesk/rules",
        "errors": ["/etc/maildesk/rules/20-network.yaml:15:12: nieznana grupa 'siec'"],
        "fallback": "previous",
        "check_command": "maildesk --config /etc/maildesk/maildesk.yaml rules check",
    }, "templates_error": {
        "count": 1,
        "directory": "/etc/maildesk/templates",
        "errors": ["/etc/maildesk/templates/pl/acknowledgement.j2:7: unexpected '}'"],
        "check_command": "maildesk --config /etc/maildesk/maildesk.yaml templates check",
    }}
