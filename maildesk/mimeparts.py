"""Single MIME parts: decoded payloads, parameters, file names and flowed text.

The ``compat32`` policy keeps header values raw, so parameters with 8-bit bytes and
RFC 2047 or RFC 2231 encodings are decoded here instead of by the stdlib.
"""

from __future__ import annotations

import binascii
import email.message
import logging
import re
from typing import Any

from maildesk.attachments import extension_for
from maildesk.charsets import decode_bytes, decode_rfc2047

logger = logging.getLogger(__name__)

# Every byte outside the base64 alphabet; bytes.translate deletes them in one pass with
# one output buffer, where a regex substitution builds a piece per line (ten times the
# memory of a large attachment).
_BASE64_NOISE = bytes(
    byte for byte in range(256)
    if not (chr(byte).isascii() and chr(byte).isalnum()) and byte not in b"+/"
)


def decode_base64_lenient(data: bytes) -> bytes:
    """Decode base64 the way mail clients do: skip stray characters, repair the padding.

    A trailing group of a single character carries no whole byte and is dropped.
    """
    cleaned = data.translate(None, _BASE64_NOISE)
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
    cleaned += b"=" * (-len(cleaned) % 4)
    return binascii.a2b_base64(cleaned)


def payload_bytes(part: email.message.Message) -> bytes:
    """Return the decoded payload (base64, quoted-printable, uuencode) or b''."""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    located = getattr(part, "large_body", None)
    if encoding == "base64" and located is not None:
        decoded = _decode_well_padded_base64(*located)
        if decoded is not None:
            return decoded
    raw = part.get_payload()
    if encoding == "base64" and isinstance(raw, str):
        decoded = _decode_well_padded_base64(raw)
        if decoded is not None:
            return decoded
        try:
            return decode_base64_lenient(raw.encode("ascii", errors="ignore"))
        except binascii.Error as error:
            logger.debug("base64 payload could not be decoded: %r", error)
    try:
        payload = part.get_payload(decode=True)
    except Exception as error:  # a damaged transfer encoding: keep what is there
        logger.debug("payload could not be decoded: %r", error)
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", errors="surrogateescape")
    return b""


def _decode_well_padded_base64(text: str | bytes, start: int = 0,
                               end: int | None = None) -> bytes | None:
    """Decode base64 at ``text[start:end]`` when its padding comes last; None otherwise.

    binascii skips line breaks and stray characters as the lenient decoder does, so for
    such text both give the same bytes, and binascii reads a large attachment in place.
    """
    end = len(text) if end is None else end
    padding = text.find("=" if isinstance(text, str) else b"=", start, end)  # type: ignore[arg-type]
    if padding >= 0:
        tail = text[padding:end]
        if isinstance(tail, bytes):
            tail = tail.decode("ascii", errors="replace")
        if end - padding >= 16 or tail.strip("= \t\r\n"):
            return None
    data = memoryview(text)[start:end] if isinstance(text, bytes) else text
    try:
        return binascii.a2b_base64(data)
    except (binascii.Error, ValueError):
        return None


def content_type_param(part: email.message.Message, name: str) -> str | tuple[str, str, str] | None:
    """Return a Content-Type parameter as ``part.get_param(name)`` does, or None.

    The parameters are parsed once per part and kept on it: the standard library parses
    the whole header again for each parameter asked for, and a body part is asked for
    several. A malformed header has no parameters.
    """
    params: dict[str, Any] | None = part.__dict__.get("_maildesk_params")
    if params is None:
        params = {}
        try:
            for key, value in part.get_params() or ():
                params.setdefault(key.lower(), value)
        except Exception:  # the standard library raises many kinds on broken headers
            params = {}
        part.__dict__["_maildesk_params"] = params
    return params.get(name.lower())


def get_param_text(part: email.message.Message, name: str) -> str:
    value = content_type_param(part, name)
    if isinstance(value, tuple):
        value = value[2]
    return str(value) if value else ""


_QUOTE_PREFIX = re.compile(r"^>+")


def unflow(text: str, delete_space: bool = False) -> str:
    """Join the soft line breaks of a ``format=flowed`` body (RFC 3676).

    A line that ends in a space continues on the next line of the same quote depth,
    except the signature separator ``-- ``. Stuffed spaces are removed.
    """
    result: list[str] = []
    current: str | None = None
    current_depth = -1
    for line in text.replace("\r\n", "\n").split("\n"):
        prefix_match = _QUOTE_PREFIX.match(line)
        prefix = prefix_match.group(0) if prefix_match else ""
        content = line[len(prefix) :]
        if content.startswith(" "):
            content = content[1:]  # space stuffing
        depth = len(prefix)

        if current is not None and depth == current_depth:
            current += content
        else:
            if current is not None:
                result.append(_with_prefix(current, current_depth))
            current, current_depth = content, depth

        if not current.endswith(" ") or current == "-- ":
            result.append(_with_prefix(current, current_depth))
            current, current_depth = None, -1
        elif delete_space:
            current = current[:-1] + "\x00"  # marks the deleted space until the join

    if current is not None:
        result.append(_with_prefix(current, current_depth))
    return "\n".join(line.replace("\x00", "") for line in result)


def _with_prefix(content: str, depth: int) -> str:
    return (">" * depth + " " + content) if depth > 0 else content


def get_charset_label(part: email.message.Message) -> str | None:
    value = content_type_param(part, "charset")
    if isinstance(value, tuple):  # RFC 2231 form
        value = value[2]
    return str(value) if value else None


def get_disposition(part: email.message.Message) -> str | None:
    value = part.get("Content-Disposition")
    if value is None:
        return None
    kind = str(value).split(";", 1)[0].strip().lower()
    return kind or None


def get_content_id(part: email.message.Message) -> str | None:
    value = part.get("Content-ID")
    if value is None:
        return None
    value = "".join(str(value).split())
    if not value:
        return None
    return value if value.startswith("<") else f"<{value.strip('<>')}>"


_CONTENT_ID_NAME = re.compile(r"^<?([\w\-. ]{1,100}\.[A-Za-z][A-Za-z0-9]{0,5})@", re.ASCII)


def name_from_headers(
    part: email.message.Message, content_type: str, default_charset: str
) -> str | None:
    """Name a part that has no file name: from its Content-ID or Content-Description.

    Outlook gives inline images Content-IDs such as ``<image001.png@01D9...>``, and
    Postfix describes its bounce parts ("Delivery report", "Undelivered Message").
    """
    content_id = get_content_id(part)
    if content_id:
        match = _CONTENT_ID_NAME.match(content_id)
        if match:
            return match.group(1)

    description = part.get("Content-Description")
    if description is not None:
        text = " ".join(decode_rfc2047(str(description), default_charset).split())
        if 0 < len(text) <= 100:
            return text + extension_for(content_type)
    return None


def _param_bytes(value: str) -> bytes:
    try:
        return value.encode("latin-1", errors="surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", errors="surrogateescape")


def raw_param(
    part: email.message.Message, parameter: str, header: str, default_charset: str
) -> str | tuple[str | None, str | None, str] | None:
    """Return a header parameter as ``get_param`` does, also when the header has 8-bit bytes.

    For a header with raw 8-bit bytes (a UTF-8 file name without encoding), the
    ``compat32`` policy hands ``get_param`` a Header object that has already replaced
    those bytes with U+FFFD. The raw value is decoded first and read from a scratch part.
    """
    raw = next((str(value) for name, value in part.raw_items() if name.lower() == header), None)
    if raw is None:
        return None
    source = part
    if any("\udc80" <= char <= "\udcff" for char in raw):
        source = email.message.Message()
        source[header] = decode_bytes(
            raw.encode("utf-8", errors="surrogateescape"), None, default_charset
        )
    try:
        return source.get_param(parameter, header=header)
    except Exception:  # a malformed header: the parameter counts as absent
        return None


def decoded_filename(part: email.message.Message, default_charset: str) -> str | None:
    """Return the attachment name from Content-Disposition or Content-Type, decoded.

    Handles RFC 2231 (``filename*0*=utf-8''...`` continuations), RFC 2047 encoded words
    (also inside quotes, which the RFC forbids but Outlook and Thunderbird write) and raw
    8-bit names.
    """
    for header, parameter in (("content-disposition", "filename"), ("content-type", "name")):
        value = raw_param(part, parameter, header, default_charset)
        if value is None:
            continue
        if isinstance(value, tuple):
            charset, _language, text = value
            name = decode_bytes(_param_bytes(text or ""), charset or None, default_charset)
            name = decode_rfc2047(name, default_charset) if "=?" in name else name
        else:
            name = decode_rfc2047(str(value), default_charset)
        name = name.strip()
        if name:
            return name
    return None


def related_root(
    part: email.message.Message, children: list[email.message.Message]
) -> email.message.Message:
    start = part.get_param("start")
    if isinstance(start, str) and start:
        for child in children:
            if get_content_id(child) == _content_id_of(start):
                return child
    return children[0]


def _content_id_of(value: str) -> str:
    value = "".join(value.split())
    return value if value.startswith("<") else f"<{value}>"


def serialize(message: email.message.Message) -> bytes:
    try:
        return message.as_bytes()
    except Exception as error:  # headers the generator cannot write back
        logger.debug("embedded message could not be serialised: %r", error)
        return str(message).encode("utf-8", errors="replace")


def serialize_body(part: email.message.Message) -> bytes:
    payload = part.get_payload()
    if isinstance(payload, list):
        return b"\n".join(
            serialize(item) for item in payload if isinstance(item, email.message.Message)
        )
    return payload_bytes(part)
