"""HTML mail bodies: readable plain text for tickets and sanitised HTML for display.

Text comes from inscriptis (Apache-2.0), which keeps the layout of lists and tables
and, with ``display_links``, every link target. Sanitised HTML comes from nh3 (the
ammonia sanitiser): no scripts, no event handlers, no remote-loading schemes other than
http, https, mailto and cid.
"""

from __future__ import annotations

import html as html_module
import logging
import re

import nh3
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

from maildesk.i18n import _

logger = logging.getLogger(__name__)

_CONFIG = ParserConfig(css=CSS_PROFILES["relaxed"], display_links=True)

_TAGS = re.compile(r"<[^>]{0,2000}>")
_SCRIPT_STYLE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
# inscriptis writes a link as "[text](url)"; when the text is the URL itself, once is enough.
_SELF_LINK = re.compile(r"\[([^\[\]\n]{1,2000})\]\(([^()\s]{1,2000})\)")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")

_ALLOWED_SCHEMES = {"http", "https", "mailto", "cid", "tel"}
_ALLOWED_ATTRIBUTES = {
    "*": {"title", "lang", "dir", "align", "style"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign", "width"},
    "th": {"colspan", "rowspan", "valign", "width"},
    "table": {"border", "cellpadding", "cellspacing", "width"},
    "font": {"color", "face", "size"},
    "ol": {"start", "type"},
    "blockquote": {"type", "cite"},
}
_ALLOWED_STYLE_PROPERTIES = {
    "color", "background-color", "font-weight", "font-style", "font-size", "font-family",
    "text-decoration", "text-align", "margin", "margin-left", "padding", "padding-left",
    "border", "border-left", "width", "white-space",
}  # fmt: skip


def _simplify_link(match: re.Match[str]) -> str:
    text, url = match.group(1), match.group(2)
    bare_url = url.removeprefix("mailto:")
    if text.strip() in (url, bare_url):
        return url if text.strip() == url else bare_url
    return match.group(0)


def html_to_text(html: str) -> str:
    """Convert an HTML body to plain text, keeping paragraphs, lists and link targets."""
    if not html.strip():
        return ""
    try:
        text = get_text(html, _CONFIG)
    except Exception as error:  # lxml raises several undocumented types on broken markup
        logger.warning(
            _("HTML to text conversion failed, tags are stripped instead: {error}").format(
                error=error
            )
        )
        text = html_module.unescape(_TAGS.sub(" ", _SCRIPT_STYLE.sub(" ", html)))

    text = _SELF_LINK.sub(_simplify_link, text)
    # Line by line: a regex for trailing blanks is quadratic in the long runs of spaces
    # that table layouts produce.
    text = "\n".join(line.rstrip() for line in text.replace("\xa0", " ").split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")


def _drop_remote_images(tag: str, attribute: str, value: str) -> str | None:
    """Keep only images embedded in the mail: a remote image tells the sender who read it."""
    if tag == "img" and attribute == "src" and not value.lower().startswith("cid:"):
        return None
    return value


def sanitize_html(html: str) -> str:
    """Remove scripts, event handlers, forms, unsafe URLs and remote images.

    Formatting, links and images embedded in the mail (``cid:``) stay.
    """
    if not html.strip():
        return ""
    tags = set(nh3.ALLOWED_TAGS) | {"font"}
    try:
        return nh3.clean(
            html,
            tags=tags,
            attributes={tag: set(names) for tag, names in _ALLOWED_ATTRIBUTES.items()},
            url_schemes=_ALLOWED_SCHEMES,
            filter_style_properties=_ALLOWED_STYLE_PROPERTIES,
            link_rel="noopener noreferrer nofollow",
            attribute_filter=_drop_remote_images,
        )
    except Exception as error:  # nh3 raises on pathological input only; drop the HTML then
        logger.warning(
            _("HTML sanitising failed, the HTML body is dropped: {error}").format(error=error)
        )
        return ""
