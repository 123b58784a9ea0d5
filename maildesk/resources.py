"""Find the files that ship beside the package: templates, rules and the demo mailbox.

In a clone (or an editable install) they are at the repository root; a wheel installs
templates and rules under ``<prefix>/share/maildesk``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPOSITORY_DIR = PACKAGE_DIR.parent


def shipped(name: str) -> Path:
    """Return the folder ``templates`` or ``rules`` that came with maildesk."""
    for candidate in (REPOSITORY_DIR / name, Path(sys.prefix) / "share" / "maildesk" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"maildesk was installed without its {name} folder")


def demo_mailbox() -> Path:
    return PACKAGE_DIR / "data" / "demo-mailbox"
