"""click's own texts in maildesk's language: usage lines, help headings and usage errors.

click marks its messages with the standard library's ``gettext.gettext`` and
``gettext.ngettext``, imported into each of its modules. Those read the language from the
POSIX locale and the process-wide text domain, while maildesk picks its language from
MAILDESK_LANGUAGE or the locale and keeps its catalogs in ``maildesk/locale``. So the
command line rebinds those two names in click's modules to maildesk's own functions, and
click's messages are translated in ``locale/pl/click.po`` like maildesk's.

The names are private to click. A click release that stops importing them this way
leaves its texts in English; nothing fails.
"""

from __future__ import annotations

import gettext
import importlib
import logging

import click

from maildesk.i18n import _, ngettext

logger = logging.getLogger(__name__)

# click's modules that call gettext (click 8.1 to 8.5); a module missing from a release
# is skipped.
CLICK_MODULES = (
    "click.core",
    "click.decorators",
    "click.exceptions",
    "click.formatting",
    "click.parser",
    "click.shell_completion",
    "click.termui",
    "click.types",
    "click.utils",
)

def translate_click() -> int:
    """Make click's modules translate through maildesk's catalogs; return how many.

    Calling it again changes nothing.
    """
    rebound = 0
    for name in CLICK_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue

        if getattr(module, "_", None) is gettext.gettext:
            module._ = _  # type: ignore[attr-defined]
            rebound += 1
        if getattr(module, "ngettext", None) is gettext.ngettext:
            module.ngettext = ngettext  # type: ignore[attr-defined]

    logger.debug("click texts translated in %d modules", rebound)
    return rebound


class IntegerType(click.types.IntParamType):
    """click's integer type, named in the current language in its error message."""

    @property
    def name(self) -> str:  # type: ignore[override]
        return _("integer")


INTEGER = IntegerType()


class CountType(click.types.IntRange):
    """A count of at least 1, such as a list's --limit, named in the current language."""

    def __init__(self) -> None:
        super().__init__(min=1)

    @property
    def name(self) -> str:  # type: ignore[override]
        return _("integer")


COUNT = CountType()


class PathType(click.types.Path):
    """click's path type, named in the current language in its error messages.

    click sets the name ("file", "directory" or "path") in ``__init__``, which runs at
    import, before translate_click() rebinds click's gettext, so the name is computed
    when an error is written instead.
    """

    @property
    def name(self) -> str:
        if self.file_okay and not self.dir_okay:
            return _("file")
        if self.dir_okay and not self.file_okay:
            return _("directory")
        return _("path")

    @name.setter
    def name(self, value: str) -> None:
        # click.Path.__init__ assigns its untranslated name; the getter replaces it.
        pass


def translate_usage(command: click.Command) -> None:
    """Translate the placeholders of the usage lines of ``command`` and its subcommands.

    click writes ``[OPTIONS]`` and ``COMMAND [ARGS]...`` without gettext, as default
    values of each command, so they are replaced once the command tree is built.
    """
    command.options_metavar = _("[OPTIONS]")
    if not isinstance(command, click.Group):
        return

    command.subcommand_metavar = _("COMMAND [ARGS]...")
    for subcommand in command.commands.values():
        translate_usage(subcommand)
