"""Complaint references a woman can read out, write down and key in on a phone keypad.

A reference is digits only, so the IVR can take it with DTMF::

    2026 000123 7  ->  "20260001237"  ->  read aloud as "2026 0001 237"
    year sequence Luhn check digit

- The year comes first so an agent can tell an old complaint at a glance, and the
  per-year sequence stays short.
- The sequence is fixed at six digits so every reference has the same length
  (eleven digits): the IVR can stop collecting after the eleventh key instead of
  asking for ``#``. Six digits hold 999,999 complaints a year, about ten times
  what the 1090 line registers.
- The Luhn check digit lets the IVR and the console refuse a mistyped reference
  before looking anything up: it catches every single-digit error and every
  swap of two adjacent digits except ``09`` <-> ``90``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import InvalidReference

__all__ = [
    "REFERENCE_LENGTH",
    "Reference",
    "format_reference",
    "is_valid_reference",
    "luhn_check_digit",
    "make_reference",
    "parse_reference",
]

MIN_YEAR: Final = 2000
MAX_YEAR: Final = 9999
SEQ_DIGITS: Final = 6
MAX_SEQ: Final = 10**SEQ_DIGITS - 1
REFERENCE_LENGTH: Final = 4 + SEQ_DIGITS + 1

_DIGITS = re.compile(rf"[0-9]{{{REFERENCE_LENGTH}}}")
# What people put between digit groups when they write a reference down or paste it.
_SEPARATORS = re.compile(r"[\s\-./]+")


def luhn_check_digit(payload: str) -> int:
    """The Luhn (mod 10) check digit to append to ``payload`` (ASCII digits)."""
    total = 0
    # Walking from the right, the digit next to the check digit is doubled first.
    for position, char in enumerate(reversed(payload)):
        digit = ord(char) - 48
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def _luhn_ok(digits: str) -> bool:
    return luhn_check_digit(digits[:-1]) == ord(digits[-1]) - 48


@dataclass(frozen=True, slots=True, order=True)
class Reference:
    """A complaint reference: the year it was registered and its number in that year."""

    year: int
    seq: int

    def __post_init__(self) -> None:
        if not MIN_YEAR <= self.year <= MAX_YEAR:
            raise ValueError(f"reference year must be {MIN_YEAR}..{MAX_YEAR}, got {self.year}")
        if not 1 <= self.seq <= MAX_SEQ:
            # Running out is a capacity problem to fix in the format, not to wrap around:
            # a wrapped sequence would hand out a reference that already exists.
            raise ValueError(f"reference sequence must be 1..{MAX_SEQ}, got {self.seq}")

    @property
    def digits(self) -> str:
        """The eleven digits a caller keys in, check digit included."""
        payload = f"{self.year:04d}{self.seq:0{SEQ_DIGITS}d}"
        return f"{payload}{luhn_check_digit(payload)}"

    def grouped(self) -> str:
        """Groups of 4-4-3 digits, the way an agent reads it aloud."""
        digits = self.digits
        return f"{digits[:4]} {digits[4:8]} {digits[8:]}"

    def __str__(self) -> str:
        return self.grouped()


def make_reference(year: int, seq: int) -> str:
    """The reference digits for complaint ``seq`` of ``year`` (``ValueError`` if out of range)."""
    return Reference(year, seq).digits


def is_valid_reference(digits: str) -> bool:
    """Whether ``digits`` is exactly a well-formed reference: eleven ASCII digits,
    a plausible year and sequence, and a correct check digit. No separators."""
    if not _DIGITS.fullmatch(digits) or not _luhn_ok(digits):
        return False
    return MIN_YEAR <= int(digits[:4]) and int(digits[4:-1]) >= 1


def parse_reference(text: str) -> Reference:
    """Read a reference as typed, pasted or keyed: spaces, dashes, dots allowed.

    Raises :class:`InvalidReference` with a message an agent can act on.
    """
    digits = _SEPARATORS.sub("", text)
    # fullmatch on [0-9] (not str.isdigit) so Arabic-Indic or superscript digits are
    # refused instead of silently becoming a different reference.
    if not _DIGITS.fullmatch(digits):
        raise InvalidReference(f"a complaint reference has {REFERENCE_LENGTH} digits")
    if not _luhn_ok(digits):
        raise InvalidReference("this complaint reference has a typing mistake (check digit)")
    year, seq = int(digits[:4]), int(digits[4:-1])
    try:
        return Reference(year, seq)
    except ValueError:
        raise InvalidReference("this is not a complaint reference we issue") from None


def format_reference(ref: Reference | str) -> str:
    """The grouped form for reading aloud; takes a :class:`Reference` or its text."""
    if isinstance(ref, str):
        ref = parse_reference(ref)
    return ref.grouped()
