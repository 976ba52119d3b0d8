"""Complaint references: keypad digits with a Luhn check the IVR can rely on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.cases.errors import InvalidReference
from callcenter.cases.reference import (
    REFERENCE_LENGTH,
    Reference,
    format_reference,
    is_valid_reference,
    luhn_check_digit,
    make_reference,
    parse_reference,
)

years = st.integers(min_value=2000, max_value=2099)
seqs = st.integers(min_value=1, max_value=999_999)
references = st.builds(make_reference, years, seqs)


def test_luhn_matches_the_published_example() -> None:
    # The worked example of ISO/IEC 7812 texts: 7992739871 -> check digit 3.
    assert luhn_check_digit("7992739871") == 3


def test_reference_layout_year_sequence_check() -> None:
    assert make_reference(2026, 123) == "20260001233"
    assert format_reference(make_reference(2026, 123)) == "2026 0001 233"
    assert str(Reference(2026, 123)) == "2026 0001 233"
    assert parse_reference("2026 0001 233") == Reference(2026, 123)


@given(years, seqs)
def test_every_reference_is_eleven_valid_digits(year: int, seq: int) -> None:
    digits = make_reference(year, seq)
    assert len(digits) == REFERENCE_LENGTH and digits.isascii() and digits.isdigit()
    assert digits.startswith(str(year))
    assert is_valid_reference(digits)


@given(years, seqs, st.lists(st.sampled_from(["", " ", "-", "  ", " - "]), min_size=11))
def test_format_and_parse_round_trip_with_any_separators(
    year: int, seq: int, separators: list[str]
) -> None:
    ref = Reference(year, seq)
    assert parse_reference(format_reference(ref)) == ref
    typed = "".join(d + sep for d, sep in zip(ref.digits, separators, strict=False))
    assert parse_reference(f" {typed} ") == ref


@given(references)
def test_every_single_digit_mistake_is_caught(digits: str) -> None:
    for position in range(len(digits)):
        for wrong in "0123456789":
            if wrong == digits[position]:
                continue
            mistyped = digits[:position] + wrong + digits[position + 1 :]
            assert not is_valid_reference(mistyped)
            with pytest.raises(InvalidReference):
                parse_reference(mistyped)


@given(references)
def test_adjacent_swaps_are_caught_except_09_and_90(digits: str) -> None:
    for i in range(len(digits) - 1):
        a, b = digits[i], digits[i + 1]
        if a == b or {a, b} == {"0", "9"}:
            continue  # no mistake, or the one swap Luhn cannot see
        swapped = digits[:i] + b + a + digits[i + 2 :]
        assert not is_valid_reference(swapped)


def test_09_swap_is_the_known_blind_spot() -> None:
    # Documented in the module: keep the docstring honest.
    digits = make_reference(2026, 90_001)  # "2026" "090001" + check
    swapped = digits[:4] + "9" + "0" + digits[6:]
    assert swapped != digits and is_valid_reference(swapped)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026000123",  # one digit short
        "202600012333",  # one digit long
        "2026 0001 23A",
        "٢٠٢٦٠٠٠١٢٣٣",  # Arabic-Indic digits must not pass as ASCII ones
        "2026#0001233",
    ],
)
def test_malformed_references_are_refused(text: str) -> None:
    assert not is_valid_reference(text)
    with pytest.raises(InvalidReference, match="11 digits"):
        parse_reference(text)


def test_references_we_never_issue_are_refused_even_with_a_good_check_digit() -> None:
    zeros = "00000000000"  # Luhn-valid, but year 0000 and sequence 0
    assert luhn_check_digit(zeros[:-1]) == 0
    assert not is_valid_reference(zeros)
    with pytest.raises(InvalidReference):
        parse_reference(zeros)
    seq_zero = "2026000000" + str(luhn_check_digit("2026000000"))
    assert not is_valid_reference(seq_zero)
    with pytest.raises(InvalidReference):
        parse_reference(seq_zero)


def test_is_valid_reference_wants_bare_digits() -> None:
    assert not is_valid_reference("2026 0001 233")
    assert is_valid_reference("20260001233")


@pytest.mark.parametrize(("year", "seq"), [(1999, 1), (2026, 0), (2026, 1_000_000), (10000, 1)])
def test_make_reference_refuses_what_does_not_fit(year: int, seq: int) -> None:
    with pytest.raises(ValueError):
        make_reference(year, seq)
