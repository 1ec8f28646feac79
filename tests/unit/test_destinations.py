"""Destination guards that need no database: number types and countries."""

from __future__ import annotations

import pytest

from service.domain.destinations import (
    country,
    country_allowed,
    parse_countries,
    refused_type,
)


@pytest.mark.parametrize(("number", "why"), [
    ("+19005550123", "a premium-rate number"),   # US 900
    ("+449098790000", "a premium-rate number"),  # UK 09
    ("+46939123456", "a premium-rate number"),   # Swedish 0939
    ("+979123456789", "a premium-rate number"),  # international premium rate
    ("+881612345678", "a satellite number"),     # Iridium: phonenumbers says MOBILE
    ("+870772123456", "a satellite number"),     # Inmarsat
    ("+88216123456", "a satellite number"),      # Thuraya
    ("+448431234567", "a premium-rate number"),  # UK 0843: premium-rate to phonenumbers
    ("+34901123456", "a shared-cost number"),    # Spanish 901
])
def test_refused_number_types(number, why):
    assert refused_type(number) == why


# The carrier simulator's special numbers, and those tests/ and bench/ send to.
@pytest.mark.parametrize("number", [
    *(f"+467000000{n:02d}" for n in range(100)),
    "+46736265400", "+46736265431", "+46736265449", "+46736265450", "+46736420001",
    "+46736420002", "+46812345678", "+4791234567", "+447400123456", "+252612345678",
])
def test_ordinary_numbers_pass_the_type_check(number):
    assert refused_type(number) is None


def test_somalia_is_a_country_like_any_other_and_refused_by_the_list():
    assert country("+252612345678") == "SO"
    assert not country_allowed("+252612345678", ["SE"])
    assert country_allowed("+252612345678", [])  # empty: every country
    assert country_allowed("+46700000001", ["NO", "SE"])
    assert country("+979123456789") == "001"  # non-geographic: only with an empty list


def test_country_lists_are_parsed_strictly():
    assert parse_countries(["se no", "SE,dk"]) == ["SE", "NO", "DK"]
    assert parse_countries([""]) == []
    for bad in ("XX", "SWE", "001", "S"):
        with pytest.raises(ValueError, match="ISO 3166"):
            parse_countries([bad])
