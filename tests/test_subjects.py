"""Reply and forward prefixes: stripping and forward detection."""

from __future__ import annotations

import pytest

from maildesk.subjects import is_forward, is_reply, strip_reply_prefixes


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Drukarka", "Drukarka"),
        ("RE: Drukarka", "Drukarka"),
        ("Odp: Drukarka", "Drukarka"),
        ("ODP: Drukarka", "Drukarka"),
        ("Odp.: Drukarka", "Drukarka"),
        ("PD: Drukarka", "Drukarka"),
        ("Fwd: Drukarka", "Drukarka"),
        ("FW: Drukarka", "Drukarka"),
        ("AW: Drukarka", "Drukarka"),
        ("WG: Drukarka", "Drukarka"),
        ("SV: Drukarka", "Drukarka"),
        ("VS: Drukarka", "Drukarka"),
        ("TR: Drukarka", "Drukarka"),
        ("RV: Drukarka", "Drukarka"),
        ("Antw: Drukarka", "Drukarka"),
        ("Doorst: Drukarka", "Drukarka"),
        ("Re[2]: Drukarka", "Drukarka"),
        ("Re^3: Drukarka", "Drukarka"),
        ("RE:RE: Drukarka", "Drukarka"),
        ("Re : Drukarka", "Drukarka"),
        ("[Fwd: Drukarka]", "Drukarka"),
        ("Re: [Fwd: Drukarka]", "Drukarka"),
        ("Odp.: AW: RE: Fwd: SV: PD: Odp: [#20460] Nowy laptop", "[#20460] Nowy laptop"),
        ("RE: [#20460] AW: Nowy laptop", "[#20460] Nowy laptop"),
        ("Re: [SD#123] Drukarka", "[SD#123] Drukarka"),
        ("Drukarka [#20460]", "Drukarka [#20460]"),
        ("Reset hasła", "Reset hasła"),
        ("Rezerwacja sali", "Rezerwacja sali"),
        ("Trwa awaria", "Trwa awaria"),
        ("", ""),
    ],
)
def test_strip_reply_prefixes_cases(subject: str, expected: str) -> None:
    assert strip_reply_prefixes(subject) == expected


def test_strip_reply_prefixes_keeps_tag_alone() -> None:
    assert strip_reply_prefixes("Re: [#20460]") == "[#20460]"


@pytest.mark.parametrize("subject", ["Fwd: x", "FW: x", "PD: x", "WG: x", "TR: x", "[Fwd: x]"])
def test_is_forward_true(subject: str) -> None:
    assert is_forward(subject)


@pytest.mark.parametrize("subject", ["Re: Fwd: x", "Odp: x", "x", "Fwdx"])
def test_is_forward_false(subject: str) -> None:
    assert not is_forward(subject)


@pytest.mark.parametrize("subject", ["RE: x", "Re: Fwd: x", "Odp: x", "ODP: x", "AW: x",
                                     "Re[2]: x", "SV: [#5] x", "[Re: x]"])
def test_is_reply_true(subject: str) -> None:
    assert is_reply(subject)


@pytest.mark.parametrize("subject", ["PD: Re: x", "Fwd: x", "x", "Rex: x", "[#5] Re: x"])
def test_is_reply_false(subject: str) -> None:
    assert not is_reply(subject)
