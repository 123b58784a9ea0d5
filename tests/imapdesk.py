"""A desk whose source is a real Dovecot account and whose SMTP is the aiosmtpd sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deskfactory import make_desk, write_config

from maildesk.desk import Desk


def imap_overrides(account: Any, smtp: Any, **source: Any) -> dict[str, Any]:
    return {
        "source": {
            "type": "imap", "host": account.host, "port": account.port, "security": "none",
            "username": account.username, "password_env": "MAILDESK_TEST_IMAP_PASSWORD",
            "poll_interval": 300, **source,
        },
        "smtp": {"transport": "smtp", "host": smtp.host, "port": smtp.port, "security": "none",
                 "timeout": 10},
    }


def imap_desk(tmp_path: Path, database_url: str, account: Any, smtp: Any, monkeypatch: Any,
              **source: Any) -> Desk:
    monkeypatch.setenv("MAILDESK_TEST_IMAP_PASSWORD", account.password)
    monkeypatch.setenv("MAILDESK_LANGUAGE", "en")  # tests match the English messages
    return make_desk(tmp_path, database_url, **imap_overrides(account, smtp, **source))


def imap_config(tmp_path: Path, database_url: str, account: Any, smtp: Any,
                **source: Any) -> Path:
    return write_config(tmp_path, database_url, **imap_overrides(account, smtp, **source))
