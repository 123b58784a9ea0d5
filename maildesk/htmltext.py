"""HTML mail bodies: readable plain text for tickets and sanitised HTML for display.

Text comes from inscriptis (Apache-2.0), which keeps the layout of lists and tables
and, with ``display_links``, every link target. Sanitised HTML comes from nh3 (the
ammonia sanitiser): no scripts, no event handlers, no remote-loading schemes other than
http, https, mailto and cid.
"""

from __future__ import annotations

import functools
import html as html_module
import logging
import re

import lxml.etree
import lxml.html
import nh3
from inscriptis import Inscriptis, get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_properties import Display
from inscriptis.model.config import ParserConfig
from inscriptis.model.html_element import HtmlElement

from maildesk.i18n import _

logger = logging.getLogger(__name__)

# The relaxed profile of inscriptis 2.7 indents the content of every <div> by two spaces.
# Mail clients build their bodies from nested divs (Gmail, Outlook on the web, Apple
# Mail, Samsung Email) and show no indentation, and an indented "-- " is no signature
# separator, so divs are plain blocks here.
_CSS = {**CSS_PROFILES["relaxed"], "div": HtmlElement(display=Display.block)}
_CONFIG = ParserConfig(css=_CSS, display_links=True)
# Outlook writes every line as a paragraph of Word's "Normal" style (class MsoNormal),
# which its style sheet gives no margin: the lines follow each other with no blank line.
_WORD_PARAGRAPHS = lxml.etree.XPath(
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' MsoNormal ')]")
_NO_MARGIN = "margin-top: 0em; margin-bottom: 0em; "
_XML_DECLARATION = re.compile(r"^<\?xml [^>]+?\?>")

# HTML past these limits is read by the linear fallback and not sanitised for display.
# nh3 needs time quadratic in the nesting depth: seconds to minutes for tens of
# thousands of open elements. libxml2, which lxml and inscriptis use, stops reading at
# 256 levels (lxml 6.1 with libxml2 2.14), so the rest of the text would be lost.
MAX_HTML_CHARS = 2 * 1024 * 1024
MAX_HTML_DEPTH = 250
# Elements libxml2 may add that the HTML does not write (html, head, body, p), with room.
_IMPLIED_ELEMENTS = 16
# True when some element lies MAX_HTML_DEPTH levels deep.
_TOO_DEEP = lxml.etree.XPath("boolean(/" + "/".join(["*"] * MAX_HTML_DEPTH) + ")")

_ANY_TAG = re.compile(r"<[^<>]*>")
_BLOCK_TAG = re.compile(
    r"<(?:br|p|div|tr|li|h[1-6]|table|blockquote|pre|hr)\b[^<>]*>", re.IGNORECASE
)
_SKIPPED_ELEMENT = re.compile(r"<(script|style|head)\b", re.IGNORECASE)
_SKIPPED_END = {
    name: re.compile(rf"</{name}[^<>]*>", re.IGNORECASE) for name in ("script", "style", "head")
}
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


@functools.lru_cache(maxsize=8)
def exceeds_html_limits(html: str) -> bool:
    """Tell whether ``html`` is too large or nests too deeply for the HTML parsers.

    The depth is that of the tree libxml2 builds, which closes the elements whose end
    tag HTML lets a writer leave out. The result is cached because several steps of
    reading one body check the same HTML.
    """
    if len(html) > MAX_HTML_CHARS:
        return True
    if html.count("<") < MAX_HTML_DEPTH - _IMPLIED_ELEMENTS:
        return False  # each level needs a tag of its own, but for the few libxml2 adds
    try:
        document = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return False  # nothing to parse: inscriptis fails too and tags are stripped
    return bool(_TOO_DEEP(document))


def strip_tags(html: str) -> str:
    """Turn HTML into text without parsing it, in time linear in its length.

    Script, style and head elements are dropped, block tags become line breaks and the
    other tags disappear. The layout is lost, the words are not.
    """
    kept: list[str] = []
    position = 0
    for match in _SKIPPED_ELEMENT.finditer(html):
        if match.start() < position:
            continue
        end = _SKIPPED_END[match.group(1).lower()].search(html, match.end())
        if end is None:
            break
        kept.append(html[position : match.start()])
        position = end.end()
    kept.append(html[position:])
    text = _BLOCK_TAG.sub("\n", "".join(kept))
    return html_module.unescape(_ANY_TAG.sub("", text))


def html_to_text(html: str) -> str:
    """Convert an HTML body to plain text, keeping paragraphs, lists and link targets."""
    if not html.strip():
        return ""
    if exceeds_html_limits(html):
        logger.debug("HTML of %d characters too large or deep, tags are stripped", len(html))
        text = strip_tags(html)
    else:
        try:
            text = _layout_text(html)
        except Exception as error:  # lxml raises several undocumented types on broken markup
            logger.warning(
                _("HTML to text conversion failed, tags are stripped instead: {error}").format(
                    error=error
                )
            )
            text = strip_tags(html)

    text = _SELF_LINK.sub(_simplify_link, text)
    # Line by line: a regex for trailing blanks is quadratic in the long runs of spaces
    # that table layouts produce.
    text = "\n".join(line.rstrip() for line in text.replace("\xa0", " ").split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")


def _layout_text(html: str) -> str:
    """Convert HTML with inscriptis, with Outlook's Word paragraphs as single lines.

    inscriptis does not read the style sheet in the HTML's head, so the margin of Word's
    paragraphs is set on each of them, and a margin in their own style attribute wins.
    """
    try:
        document = lxml.html.document_fromstring(_XML_DECLARATION.sub("", html.strip(), count=1))
    except lxml.etree.ParserError:
        return get_text(html, _CONFIG)  # nothing to parse: inscriptis reads it as <pre>
    for paragraph in _WORD_PARAGRAPHS(document):
        paragraph.set("style", _NO_MARGIN + (paragraph.get("style") or ""))
        if not paragraph.text_content().strip() and not paragraph.xpath(".//img"):
            # An empty paragraph (<o:p>&nbsp;</o:p>) is Outlook's blank line, but inscriptis
            # drops a block without text, and keeps one that holds a line break.
            for child in list(paragraph):
                paragraph.remove(child)
            paragraph.text = None
            paragraph.append(lxml.html.Element("br"))
    return str(Inscriptis(document, _CONFIG).get_text())


def _drop_remote_images(tag: str, attribute: str, value: str) -> str | None:
    """Keep only images embedded in the mail: a remote image tells the sender who read it."""
    if tag == "img" and attribute == "src" and not value.lower().startswith("cid:"):
        return None
    return value


def sanitize_html(html: str) -> str:
    """Remove scripts, event handlers, forms, unsafe URLs and remote images.

    Formatting, links and images embedded in the mail (``cid:``) stay. HTML past the
    size or depth limits is dropped (an empty result): its text is in the ticket.
    """
    if not html.strip():
        return ""
    if exceeds_html_limits(html):
        logger.debug("HTML of %d characters too large or deep, not sanitised", len(html))
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
