"""Text for an admin's terminal: text from mail made safe to print, commands to paste."""

from __future__ import annotations

import shlex
import unicodedata
from pathlib import Path


def command_line(config_path: Path, *arguments: str, positional: tuple[str, ...] = ()) -> str:
    """Return a ``maildesk --config ...`` command line, quoted for a POSIX shell.

    ``positional`` are names from the configuration or from mail (a group, a login), which
    may begin with "-" and be read as an option. When one of them does, "--" goes before
    them. It is left out otherwise, because an admin who appends ``--dry-run`` after "--"
    passes it as a name.
    """
    separator = ["--"] if any(argument.startswith("-") for argument in positional) else []
    return shlex.join(["maildesk", "--config", str(config_path), *arguments, *separator,
                       *positional])


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
