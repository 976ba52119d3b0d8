"""Errors of the cases layer (one root; the vault's errors sit below it).

Every class carries a stable ``code`` so the web layer can map it to an HTTP
error body without a lookup table of its own. No message in this module ever
contains a phone number, a digit of one, or key material: these errors end up
in logs, in HTTP responses and in an agent's browser.
"""

from __future__ import annotations

from typing import ClassVar


class CaseError(Exception):
    """Root of every error raised by ``callcenter.cases``."""

    code: ClassVar[str] = "case_error"


class VaultError(CaseError):
    """Root of the caller identity vault's errors."""

    code: ClassVar[str] = "vault_error"


class InvalidNumber(VaultError, ValueError):
    """The text is not a usable phone number.

    The message says why (too short, not a number...) but never repeats the input:
    the input is usually a caller's number, and a near miss is still her number.
    """

    code: ClassVar[str] = "invalid_number"


class WithheldNumber(InvalidNumber):
    """The caller ID is a "number withheld" marker (``<unknown>``, ``anonymous``...).

    A subclass of :class:`InvalidNumber` so strict callers need one ``except``; the
    IVR uses :meth:`Vault.admit_caller_id`, which turns it into a withheld entry.
    """

    code: ClassVar[str] = "withheld_number"


class KeyringError(VaultError):
    """The vault's keys are missing or unsafe (bad encoding, file mode, location).

    Raised at start-up; the service must not run with a half-usable vault.
    """

    code: ClassVar[str] = "vault_keyring"


class UnknownKeyId(VaultError, LookupError):
    """A sealed number or token names a key id the keyring does not hold.

    After a rotation this means an old key was dropped while rows still use it.
    """

    code: ClassVar[str] = "vault_unknown_key"

    def __init__(self, kid: str) -> None:
        self.kid = kid
        super().__init__(f"no vault key with id {kid!r}")


class SealBroken(VaultError):
    """A sealed number cannot be opened: malformed, tampered, or the wrong purpose.

    AES-GCM cannot tell these apart (a wrong purpose and a flipped bit both fail
    the tag), so neither does this error.
    """

    code: ClassVar[str] = "vault_seal_broken"


class InvalidReference(CaseError, ValueError):
    """The text is not a complaint reference (wrong length, digits or check digit)."""

    code: ClassVar[str] = "invalid_reference"
