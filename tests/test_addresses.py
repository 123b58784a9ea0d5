"""RFC 5322 address spellings reduced to one: the character classes behind them."""

from __future__ import annotations

import re

import pytest

from maildesk import addresses

ASCII_ATEXT = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                  "!#$%&'*+-/=?^_`{|}~")
ASCII_DOMAIN = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
# The ends of the non-ASCII blocks, surrogates included: the classes treat every
# character above U+007F alike, so these stand for the rest.
NON_ASCII = [0x80, 0xA0, 0xFF, 0x100, 0x17C, 0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFFFD,
             0xFFFF, 0x10000, 0x1F600, 0x10FFFF]


@pytest.mark.parametrize("code_point", [*range(0x80), *NON_ASCII])
def test_atext_class_follows_rfc(code_point):
    character = chr(code_point)
    expected = code_point > 0x7F or character in ASCII_ATEXT

    assert bool(re.fullmatch(addresses._ATEXT, character)) is expected


@pytest.mark.parametrize("code_point", [*range(0x80), *NON_ASCII])
def test_domain_class_follows_rfc(code_point):
    character = chr(code_point)
    expected = code_point > 0x7F or character in ASCII_DOMAIN

    assert bool(re.fullmatch(addresses._DOMAIN_CHARACTER, character)) is expected


@pytest.mark.parametrize("address", [
    "jan.kowalski@example.org",
    "o'brien+desk@example.org",
    "zażółć@przykład.pl",
    "a!#$%&'*+-/=?^_`{|}~z@sub-domain.example.org",
])
def test_plain_addresses_kept_as_written(address):
    assert addresses._PLAIN_ADDRESS.fullmatch(address)
    assert addresses.canonical_addr_spec(address) == address


@pytest.mark.parametrize("address, canonical", [
    ('"jan"@example.org', "jan@example.org"),
    ("jan(comment)@example.org", "jan@example.org"),
    ("jan@example.org.", "jan@example.org"),
    ('"j"."an"@example.org', "j.an@example.org"),
    ('"jan kowalski"@example.org', '"jan kowalski"@example.org'),
    ("@relay.example:jan@example.org", "jan@example.org"),
])
def test_other_spellings_reduced(address, canonical):
    assert not addresses._PLAIN_ADDRESS.fullmatch(address)
    assert addresses.canonical_addr_spec(address) == canonical
