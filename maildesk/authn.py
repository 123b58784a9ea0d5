"""Is a mail that claims to come from an agent really from them?

The From address alone proves nothing: anyone can write it. Three policies are offered
(``commands.authentication``):

- ``authentication_results``: the desk's own receiving server checked DKIM and DMARC and
  wrote an Authentication-Results header (RFC 8601). Only headers whose authserv-id is
  listed in ``trusted_authserv_ids`` count; a pass claimed under any other id, or a
  DKIM-Signature header without a verdict, is ignored.
- ``dkim``: maildesk verifies a DKIM signature (RFC 6376) of the agent's domain itself.
- ``address_only``: the From address is trusted; start-up logs a warning.

Under every policy the header fields the desk acts on must be unambiguous, and under
``dkim`` From, Subject and Message-ID must also be signed (``maildesk.authheaders``).
A passing verdict names the fields of ``authheaders.UNTRUSTED_UNLESS_SIGNED`` that the
mail has and the check cannot show to be signed, so that the desk does not act on them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from maildesk.authheaders import (
    UNTRUSTED_UNLESS_SIGNED,
    header_problem,
    present_headers,
    unsigned_headers,
)
from maildesk.errors import TemporaryError
from maildesk.i18n import N_, _
from maildesk.parse import ParsedMessage
from maildesk.reasons import Reason

logger = logging.getLogger(__name__)

DnsTxtLookup = Callable[..., bytes | str | None]


@dataclass(frozen=True)
class ResultInfo:
    """One ``method=result`` statement of an Authentication-Results header."""

    method: str
    result: str
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str
    results: tuple[ResultInfo, ...]

    def summary(self) -> str:
        """Return e.g. ``mx.example.com: dkim=fail, spf=fail, dmarc=fail``."""
        statements = ", ".join(f"{info.method}={info.result}" for info in self.results)
        return f"{self.authserv_id}: {statements or 'none'}"


@dataclass(frozen=True)
class Verdict:
    """Whether the mail is authenticated as coming from the domain, and why (for the audit).

    ``unsigned`` names the header fields of ``authheaders.UNTRUSTED_UNLESS_SIGNED`` that
    the mail has and that no checked signature covers. Anyone who has a copy of the
    mail may have written them. Under ``authentication_results`` that is every such
    field the mail has, because the receiving server does not say what it found signed.
    Under ``address_only`` it is empty, because that policy trusts the whole mail.
    """

    passed: bool
    policy: str
    summary: str
    unsigned: frozenset[str] = frozenset()


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 comments (nested parentheses) outside quoted strings."""
    output: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                output.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                output.append(char)
            continue
        if quoted:
            output.append(char)
            if char == '"':
                quoted = False
            continue
        if char == "(":
            depth += 1
            continue
        if char == ")" and depth:
            depth -= 1
            continue
        if depth:
            continue
        if char == '"':
            quoted = True
        output.append(char)
    return "".join(output)


_STATEMENT = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)')


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """Parse one Authentication-Results value; return None when it has no authserv-id."""
    text = _strip_comments(value.replace("\r", " ").replace("\n", " "))
    parts = [part.strip() for part in _split_outside_quotes(text, ";")]
    if not parts or not parts[0]:
        return None
    authserv_id = parts[0].split()[0].lower()

    results: list[ResultInfo] = []
    for part in parts[1:]:
        statements = _STATEMENT.findall(part)
        if not statements:
            continue
        method, result = statements[0]
        properties = {name.lower(): raw.strip('"').lower() for name, raw in statements[1:]}
        results.append(ResultInfo(method.lower().split("/")[0], result.lower(), properties))
    return AuthenticationResults(authserv_id, tuple(results))


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside quoted strings, whose ``\\"`` does not end them.

    A property value may be a quoted string, and a verifier may copy the sender's DKIM
    ``i=`` or envelope local part into one. A quote that ended it early would let the
    sender write a result of their own after it.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def aligned(signing_domain: str, address_domain: str) -> bool:
    """Tell whether ``signing_domain`` may vouch for mail from ``address_domain``.

    Relaxed alignment, as in DMARC: the same domain, or a parent of the address domain
    that has at least two labels. A top-level domain such as ``com`` is never a parent,
    because a pass for it would vouch for every domain under it.

    NOTE: without a Public Suffix List, a multi-label public suffix such as ``com.pl``
    or ``co.uk`` is still accepted as a parent of ``firma.com.pl``.
    """
    signing = _normalize_domain(signing_domain)
    address = _normalize_domain(address_domain)
    if not signing or not address:
        return False
    if address == signing:
        return True
    return "." in signing and address.endswith("." + signing)


def _normalize_domain(domain: str) -> str:
    """Return ``domain`` lower-cased, in ASCII, without its root dot; "" when invalid.

    A Unicode name becomes its IDNA (punycode) form, so ``header.d=xn--...`` from a
    verifier matches an address written in Unicode, and the other way round.
    """
    name = domain.strip().lower()
    name = name.removesuffix(".")
    if not name or "" in name.split("."):
        return ""
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return name


def trusted_results(message: ParsedMessage,
                    trusted_ids: tuple[str, ...]) -> AuthenticationResults | None:
    """Return the topmost Authentication-Results header written by a trusted server.

    The receiving server adds its header above everything the sender wrote, so the
    topmost trusted one is the server's own. NOTE: this is true only when the server
    also removes Authentication-Results headers with its own authserv-id from incoming
    mail, as RFC 8601 section 5 requires. Check that your MTA does.
    """
    trusted = {item.lower() for item in trusted_ids}
    for value in message.header_all("Authentication-Results"):
        parsed = parse_authentication_results(value)
        if parsed is not None and parsed.authserv_id in trusted:
            return parsed
    return None


def check_authentication_results(message: ParsedMessage, domain: str,
                                 trusted_ids: tuple[str, ...]) -> Verdict:
    """Pass on dkim=pass with an aligned header.d, or dmarc=pass for header.from=domain."""
    policy = "authentication_results"
    results = trusted_results(message, trusted_ids)
    if results is None:
        names = ", ".join(trusted_ids) or "-"
        return Verdict(False, policy,
                       Reason(N_("no Authentication-Results from {names}"), names=names))

    unaligned: list[str] = []
    for info in results.results:
        if info.result != "pass" or info.method not in ("dkim", "dmarc"):
            continue
        name = "header.d" if info.method == "dkim" else "header.from"
        passed_for = info.properties.get(name, "")
        if aligned(passed_for, domain):
            return Verdict(True, policy, results.summary(),
                           frozenset(present_headers(message, UNTRUSTED_UNLESS_SIGNED)))
        unaligned.append(f"{info.method}=pass {name}={passed_for or '-'}")
    if unaligned:
        # Say why a pass did not count: another domain, or a top-level one such as "com".
        return Verdict(False, policy, Reason(
            N_("{results} ({unaligned}: not {domain} or a parent domain of it)"),
            results=results.summary(), unaligned=", ".join(unaligned), domain=domain))
    return Verdict(False, policy, results.summary())


def verify_dkim(raw: bytes, domain: str, dns_txt: DnsTxtLookup | None = None) -> Verdict:
    """Verify the DKIM signatures of ``raw``; pass when one of an aligned domain verifies.

    A signature with a body length limit (``l=``) never passes, and neither does one
    whose ``h=`` tag lists a field of ``authheaders.SIGNED_HEADERS`` fewer times than
    the mail has it. Instances are counted as dkimpy reads the header block, which is
    how the desk reads it once ``authheaders.header_problem`` found nothing wrong. A
    field of ``authheaders.UNTRUSTED_UNLESS_SIGNED`` counts as signed when one passing
    signature covers every instance of it, so after a pass the other signatures are
    checked until those fields are all signed. The verdict names the rest.

    ``dns_txt(name, timeout=...)`` returns the TXT record of a selector; None uses the
    system resolver (dnspython). Raises TemporaryError when the look-up times out, so
    the mail stays at its source and is tried again.
    """
    policy = "dkim"
    header_block = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    count = len(re.findall(rb"(?im)^dkim-signature[ \t]*:", header_block))
    if count == 0:
        return Verdict(False, policy, Reason(N_("dkim=none (no DKIM-Signature)")))

    # Imported here: dkimpy and dnspython add about 14 MiB to every process, and only
    # desks that verify agents by DKIM need them.
    import dkim
    import dkim.dnsplug

    lookup = dns_txt or dkim.dnsplug.get_txt
    timeouts: list[Exception] = []

    def recording_lookup(name: bytes, timeout: int = 5) -> bytes | str | None:
        # dkimpy turns a DNS timeout into a failed signature; maildesk retries instead.
        try:
            return lookup(name, timeout=timeout)
        except dkim.DnsTimeoutError as error:
            timeouts.append(error)
            raise

    outcomes: list[str] = []
    verdict: Verdict | None = None
    for index in range(count):
        try:
            verifier = dkim.DKIM(raw, logger=logger)
            passed = verifier.verify(idx=index, dnsfunc=recording_lookup)
        except dkim.DKIMException as error:
            logger.debug("DKIM signature %d does not verify: %s", index, error)
            outcomes.append(f"dkim=fail ({error})")
            continue
        if timeouts:
            if verdict is not None:
                break  # an earlier signature passed, and this one could only cover more
            raise TemporaryError(
                _("the DKIM key of {domain} could not be looked up: {error}").format(
                    domain=domain, error=timeouts[0]))
        signer = (verifier.domain or b"").decode("ascii", "replace")
        if passed and b"l" in (verifier.signature_fields or {}):
            # l= signs only the first bytes of the body: anyone may append text after
            # them (RFC 6376, 8.2), such as a command, and the signature still verifies.
            outcomes.append(Reason(N_("dkim=fail (l= covers part of the body) "
                                      "header.d={signer}"), signer=signer))
            continue
        if passed and aligned(signer, domain):
            present = [name.decode("ascii", "replace") for name, _value in verifier.headers]
            signed = [name.decode("ascii", "replace") for name in verifier.include_headers]
            missing = unsigned_headers(present, signed)
            if missing:
                # A field outside h= can be added or changed, and the signature still
                # verifies.
                outcomes.append(Reason(N_("dkim=pass header.d={signer}, but h= does not "
                                          "cover every instance of {names}"),
                                       signer=signer, names=", ".join(missing)))
                continue
            unsigned = frozenset(unsigned_headers(present, signed, UNTRUSTED_UNLESS_SIGNED))
            if verdict is None:
                verdict = Verdict(True, policy, f"dkim=pass header.d={signer}", unsigned)
            else:
                # Each signature covers the Message-ID, so both sign this very mail, and
                # a field either of them covers is the signer's.
                verdict = Verdict(True, policy, verdict.summary, verdict.unsigned & unsigned)
            if not verdict.unsigned:
                break
            continue
        outcomes.append(f"dkim={'pass' if passed else 'fail'} header.d={signer}")
    if verdict is not None:
        return verdict
    # A single outcome keeps its translation; several are joined as raw results.
    return Verdict(False, policy, outcomes[0] if len(outcomes) == 1 else ", ".join(outcomes))


def authenticate(message: ParsedMessage, raw: bytes, address: str, policy: str,
                 trusted_ids: tuple[str, ...], dns_txt: DnsTxtLookup | None = None) -> Verdict:
    """Check that ``message`` (parsed from ``raw``) really comes from ``address``.

    A mail with several From mailboxes fails under every policy: the desk reads the
    first, while DKIM may cover another, so no verdict names the author (RFC 7489, 6.6.1).
    So does a mail whose address comes from Sender or Reply-To, because DMARC and a
    submission server check the From address only, and a mail whose header fields are
    ambiguous (``authheaders.header_problem``).
    """
    if message.from_count > 1:
        return Verdict(False, policy, Reason(
            N_("several From mailboxes ({count}): the author is ambiguous"),
            count=message.from_count))
    if message.author_header != "From":
        return Verdict(False, policy, Reason(
            N_("no usable From mailbox, the address comes from {header}"),
            header=message.author_header))
    problem = header_problem(message, raw)
    if problem is not None:
        return Verdict(False, policy, problem)
    domain = address.rpartition("@")[2].lower()
    if policy == "address_only":
        return Verdict(True, policy, Reason(N_("address only")))
    if policy == "dkim":
        return verify_dkim(raw, domain, dns_txt)
    return check_authentication_results(message, domain, trusted_ids)


__all__ = [
    "AuthenticationResults",
    "ResultInfo",
    "Verdict",
    "aligned",
    "authenticate",
    "check_authentication_results",
    "parse_authentication_results",
    "trusted_results",
    "verify_dkim",
]
