"""Text from mail made safe to print on an admin's terminal."""

from __future__ import annotations

import unicodedata


def terminal_safe(text: str, keep_line_breaks: bool = False) -> str:
    """Escape the characters a terminal acts on instead of printing them.

    Control characters (ESC, a lone CR, C1 controls such as CSI), format characters
    (bidirectional overrides) and line and paragraph separators become Python escapes
    like ``\\x1b`` and ``\\u202e``. Tabs and spaces stay, and so do LFs with
    ``keep_line_breaks``. Backslashes are not doubled, so a mail that contains the text
    ``\\x1b`` looks the same as one that contains ESC: ``--raw`` gives the exact bytes.
    """
    escaped = []
    for character in text:
        if (character.isprintable() or character == "\t"
                or unicodedata.category(character) == "Zs"
                or (keep_line_breaks and character == "\n")):
            escaped.append(character)
        else:
            escaped.append(character.encode("unicode_escape").decode("ascii"))
    return "".join(escaped)
