"""Jinja2 mail templates: one file per mail and language, rendered in a sandbox.

A template file extends ``_layout.j2`` and fills the blocks ``subject``, ``text`` and,
optionally, ``html``. The layout adds the signature. Templates are edited by admins, so
they run in a SandboxedEnvironment with StrictUndefined: a misspelt variable is an error
at check time, not an empty gap in a mail to a user. The HTML part is rendered in a
second environment with autoescaping on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_datetime
from jinja2.sandbox import SandboxedEnvironment

from maildesk.errors import ConfigError
from maildesk.i18n import LANGUAGES, _
from maildesk.parse import single_line

logger = logging.getLogger(__name__)

PARTS = ("subject", "text", "html")

# "4 grudnia 2026 r., 14:05" is how Polish offices write a date and time.
_DATETIME_PATTERNS = {"pl": "d MMMM y 'r.', HH:mm", "en": "d MMMM y, HH:mm"}


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str | None
    language: str


def polish_plural(count: int, one: str, few: str, many: str) -> str:
    """Choose the Polish form: 1 zgłoszenie, 2-4 zgłoszenia (not 12-14), else zgłoszeń."""
    if count == 1:
        return one
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return few
    return many


class Templates:
    """The template set of a desk, loaded from ``root/<language>/<name>.j2``."""

    def __init__(self, root: Path, default_language: str = "pl",
                 timezone: str = "Europe/Warsaw") -> None:
        self.root = root
        self.default_language = default_language
        self.timezone = ZoneInfo(timezone)
        self._environments = {
            autoescape: self._make_environment(autoescape) for autoescape in (False, True)
        }

    def _make_environment(self, autoescape: bool) -> SandboxedEnvironment:
        environment = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.root)),
            undefined=jinja2.StrictUndefined,
            autoescape=autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=True,
        )
        environment.filters["datetime"] = self._format_datetime
        environment.filters["plural"] = self._plural
        return environment

    def _format_datetime(self, value: datetime | None, language: str = "pl") -> str:
        """Format an instant in the desk's time zone the way the reader writes dates."""
        if value is None:
            return "—"
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        pattern = _DATETIME_PATTERNS.get(language, _DATETIME_PATTERNS["en"])
        return format_datetime(value.astimezone(self.timezone), pattern, locale=language)

    @staticmethod
    def _plural(count: int, *forms: str) -> str:
        if len(forms) == 3:
            return polish_plural(int(count), *forms)
        if len(forms) == 2:
            return forms[0] if int(count) == 1 else forms[1]
        raise ValueError("plural needs 2 (English) or 3 (Polish) forms")

    def languages_for(self, preferred: str | None) -> list[str]:
        """The fallback chain: the reader's language, the desk default, then the rest."""
        chain = [preferred, self.default_language, *LANGUAGES]
        return [code for index, code in enumerate(chain) if code and code not in chain[:index]]

    def names(self, language: str | None = None) -> set[str]:
        """Names of the mail templates (files not starting with ``_``) in one or all languages."""
        languages = [language] if language else list(LANGUAGES)
        found = set()
        for code in languages:
            folder = self.root / code
            if folder.is_dir():
                found |= {p.stem for p in folder.glob("*.j2") if not p.name.startswith("_")}
        return found

    def render(self, name: str, language: str | None, context: dict[str, Any]) -> RenderedMail:
        """Render one mail in the first language of the fallback chain that has it."""
        for code in self.languages_for(language):
            if (self.root / code / f"{name}.j2").exists():
                return self._render_in(name, code, context)
        raise ConfigError(
            _("template '{name}' not found in {root}").format(name=name, root=self.root)
        )

    def _render_in(self, name: str, language: str, context: dict[str, Any]) -> RenderedMail:
        template_name = f"{language}/{name}.j2"
        values = {**context, "language": language}
        try:
            text_template = self._environments[False].get_template(template_name)
            subject = text_template.render(values, part="subject")
            text = text_template.render(values, part="text")
            html = None
            if "html" in text_template.blocks:
                html_template = self._environments[True].get_template(template_name)
                html = html_template.render(values, part="html")
        except jinja2.TemplateSyntaxError as error:
            raise ConfigError(
                _("template syntax error: {message}").format(message=error.message),
                f"{self.root / template_name}:{error.lineno}",
            ) from error
        except jinja2.TemplateError as error:
            raise ConfigError(
                _("template error: {message}").format(message=error),
                f"{self.root / template_name}:{_error_line(error, template_name)}",
            ) from error
        return RenderedMail(single_line(subject), text.strip() + "\n",
                            html.strip() if html else None, language)

    def check(self, sample_context: dict[str, Any]) -> list[ConfigError]:
        """Render every template in every language against a sample; return the errors."""
        errors = []
        for code in LANGUAGES:
            for name in sorted(self.names(code)):
                try:
                    self._render_in(name, code, sample_context)
                except ConfigError as error:
                    errors.append(error)
        return errors


def _error_line(error: Exception, template_name: str) -> int | str:
    """Find the template line of a render-time error in its traceback.

    Jinja2 rewrites the traceback so that frames of template code carry the template's
    file name and line; the innermost such frame is where the error happened.
    """
    traceback = error.__traceback__
    line: int | str = "?"
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename.endswith(template_name):
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line
