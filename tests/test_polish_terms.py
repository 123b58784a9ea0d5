"""Polish text uses one term per concept in the catalogs, templates and docs.

Each row below is a variant that appeared next to the term used everywhere else, with
the term to write instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = ROOT / "maildesk" / "locale" / "pl"

# Each variant is matched case-insensitively, in Polish text only.
VARIANTS = [
    (r"\breguł\w* routingu\b", "reguły przydziału (routing rules)"),
    (r"\bstatus(?:ie|u|em)? (?:new|assigned|in_progress|pending|resolved|closed|reopened)\b",
     "the Polish status name (nowe, przypisane, w realizacji, ...), not the code"),
]


def _catalog_texts() -> list[tuple[str, str]]:
    texts = []
    for po_path in sorted(CATALOG_DIR.glob("*.po")):
        with po_path.open("rb") as po_file:
            for entry in read_po(po_file, locale="pl"):
                forms = entry.string if isinstance(entry.string, tuple) else (entry.string,)
                texts += [(po_path.name, form) for form in forms if form]
    return texts


def _file_texts() -> list[tuple[str, str]]:
    paths = [*sorted((ROOT / "templates" / "pl").glob("*.j2")),
             *sorted((ROOT / "docs").glob("*.pl.md")), ROOT / "README.pl.md"]
    return [(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")) for path in paths]


@pytest.mark.parametrize(("variant", "term"), VARIANTS)
def test_polish_text_uses_glossary_term(variant: str, term: str) -> None:
    pattern = re.compile(variant, re.IGNORECASE)

    found = [f"{where}: {match.group(0)!r}" for where, text in _catalog_texts() + _file_texts()
             for match in pattern.finditer(text)]

    assert found == [], f"write {term}"
