"""The caller identity vault: the one place a phone number exists in clear.

1090 promises every woman that her identity stays hidden until she consents. Outside
this module (and the AMI frames in memory) a number only travels as

- a :class:`CallerToken`: a keyed HMAC-SHA256 of the E.164 number. The full hex
  digest links her calls and cases; its short code (``T-`` + 8 Crockford base32
  characters) is what an agent sees and reads aloud. Without the key, nobody can
  test a guessed number against a token, even though India's numbering space is
  small enough to enumerate.
- a :class:`SealedNumber`: the number encrypted with AES-256-GCM, for the few
  things that need it back (a callback, a consented reveal). The associated data
  binds it to its :class:`Purpose` and key id, so a sealed harasser number cannot
  be opened as a caller's by mistake.
- a :class:`SecretNumber` in memory, whose ``repr``/``str`` never show a digit.

Keys
----
Each key id (``kid``) has one 32-byte master secret. HKDF-SHA256 derives two
independent keys from it: one for AES-GCM, one for the token HMAC. One secret per
kid means one thing to back up, rotate and destroy; HKDF makes sure the HMAC key
never equals the encryption key. The keyring has one *active* kid: :meth:`Vault.seal`
and :meth:`Vault.token_for` use it, :meth:`Vault.open` accepts any kid the keyring
holds. Rotation (issue 6) adds a new active kid, walks the rows with
:meth:`Vault.reseal` and :meth:`Vault.retoken`, and looks callers up meanwhile with
:meth:`Vault.tokens_for` (one token per known kid); then the old kid is dropped.

Keys come from the environment or from a key file outside the repository that only
its owner can read; see :func:`load_keyring`. :func:`generate_key` makes one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

import phonenumbers
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import (
    InvalidNumber,
    KeyringError,
    SealBroken,
    UnknownKeyId,
    WithheldNumber,
)

__all__ = [
    "ENV_ACTIVE_KID",
    "ENV_KEYS",
    "ENV_KEY_FILE",
    "CallerToken",
    "Keyring",
    "Purpose",
    "SealedNumber",
    "SecretNumber",
    "Vault",
    "VaultEntry",
    "VaultKey",
    "generate_key",
    "is_withheld",
    "load_keyring",
    "mask_number",
    "normalise_number",
]

ENV_KEYS: Final = "CALLCENTER_VAULT_KEYS"
ENV_ACTIVE_KID: Final = "CALLCENTER_VAULT_ACTIVE_KID"
ENV_KEY_FILE: Final = "CALLCENTER_VAULT_KEY_FILE"

DEFAULT_REGION: Final = "IN"
MASTER_KEY_BYTES: Final = 32

# Crockford's base32: no I, L, O or U, so a code read aloud or handwritten has one reading.
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_SHORT_CODE_CHARS: Final = 8  # 40 bits: a label for humans; linking uses the full digest

# A kid appears inside the sealed string between dots, and in file and env syntax.
_KID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_E164 = re.compile(r"\+[1-9][0-9]{5,15}")
# Carrier caller IDs are ASCII digits with optional punctuation. Letters are refused
# because phonenumbers reads them as vanity digits: a token such as ``T-4821`` that
# comes back in a later event must not turn into somebody's phone number.
_DIALLABLE = re.compile(r"\+?[0-9 ().\-]+")
_MAX_INPUT = 64

# What Asterisk and carriers put in the caller ID when the caller hid her number.
_WITHHELD_MARKERS: Final = frozenset(
    {
        "",
        "<unknown>",
        "unknown",
        "<unavailable>",
        "unavailable",
        "anonymous",
        "restricted",
        "private",
        "withheld",
        "blocked",
    }
)

_SEAL_VERSION: Final = "v1"
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
# E.164 numbers are at most 16 characters with the "+"; padding every plaintext to a
# block of 16 keeps the ciphertext length from telling which country she calls from.
_PAD_BLOCK: Final = 16
_B64URL = re.compile(r"[A-Za-z0-9_-]+")

_HKDF_SEAL_INFO: Final = b"callcenter/vault/v1/aes-256-gcm"
_HKDF_TOKEN_INFO: Final = b"callcenter/vault/v1/token-hmac-sha256"


class Purpose(StrEnum):
    """Why a number is in the vault. Bound into both the token and the seal."""

    CALLER = "caller"
    HARASSER = "harasser"

    @property
    def token_prefix(self) -> str:
        return _TOKEN_PREFIX[self]


_TOKEN_PREFIX: Final = {Purpose.CALLER: "T", Purpose.HARASSER: "H"}
_WITHHELD_PREFIX: Final = "W"


# --------------------------------------------------------------------------- numbers


class SecretNumber:
    """A normalised E.164 number in memory. Its ``repr``/``str`` show no digit.

    Get one from :func:`normalise_number` or :meth:`Vault.open`; read the number with
    :attr:`e164` only where it leaves for the PBX or an SMS gateway. Formatting one
    into a log line gives ``<number withheld>``, never a digit.
    """

    __slots__ = ("_e164",)

    def __init__(self, e164: str) -> None:
        if not _E164.fullmatch(e164):
            raise InvalidNumber("not an E.164 number")
        self._e164 = e164

    @property
    def e164(self) -> str:
        """The number in clear, e.g. for an ``Originate``. Never log it."""
        return self._e164

    @property
    def masked(self) -> str:
        """For a consent-reveal screen only: the last two digits, e.g. ``******10``."""
        return mask_number(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretNumber):
            return NotImplemented
        return hmac.compare_digest(self._e164, other._e164)

    def __hash__(self) -> int:
        return hash((SecretNumber, self._e164))

    def __repr__(self) -> str:
        return "SecretNumber(<withheld>)"

    def __str__(self) -> str:
        return "<number withheld>"

    def __copy__(self) -> SecretNumber:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretNumber:
        return self

    def __reduce__(self) -> Any:
        # Pickling would copy the number into caches and queues outside the vault.
        raise TypeError("a SecretNumber cannot be pickled")


def is_withheld(caller_id: str | None) -> bool:
    """Whether a caller ID says the number was hidden (Asterisk's ``<unknown>`` etc.)."""
    return caller_id is None or caller_id.strip().lower() in _WITHHELD_MARKERS


def normalise_number(raw: str | None, region: str = DEFAULT_REGION) -> SecretNumber:
    """Parse any common way of writing a number into E.164.

    ``+91 98765 43210``, ``09876543210``, ``9876543210``, ``919876543210`` and
    ``0091-98765-43210`` all give ``+919876543210``: every call from her must give the
    same token, however the carrier formatted it that day.

    Raises :class:`WithheldNumber` for hidden caller IDs and :class:`InvalidNumber`
    for anything else that is not a valid number; neither message repeats the input.
    """
    if is_withheld(raw):
        raise WithheldNumber("the caller's number is withheld")
    assert raw is not None  # is_withheld(None) is True
    text = raw.strip()
    if len(text) > _MAX_INPUT:
        raise InvalidNumber("too long to be a phone number")
    if not _DIALLABLE.fullmatch(text):
        raise InvalidNumber("a phone number has only digits, spaces, dashes and a leading +")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        # from None: the parser's context is the input; keep it out of tracebacks.
        raise InvalidNumber("not a phone number") from None
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason == phonenumbers.ValidationResult.TOO_SHORT:
        raise InvalidNumber("too short to be a phone number")
    if reason == phonenumbers.ValidationResult.TOO_LONG:
        raise InvalidNumber("too long to be a phone number")
    # "Valid", not just "possible": a number without its area code, or with a stray
    # prefix (0-91-...), would otherwise get a token of its own and split her history.
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("not a valid phone number for any known numbering plan")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return SecretNumber(e164)


def mask_number(number: SecretNumber) -> str:
    """At most the last two digits, behind a fixed run of stars (length not revealed)."""
    return "******" + number.e164[-2:]


def _crockford(data: bytes, chars: int) -> str:
    value = int.from_bytes(data, "big")
    bits = len(data) * 8
    out = []
    for i in range(chars):
        shift = bits - 5 * (i + 1)
        out.append(_CROCKFORD[(value >> shift) & 0x1F])
    return "".join(out)


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class CallerToken:
    """A pseudonym for a number: the same number gives the same token under one key.

    ``digest`` (64 hex characters) is what the store links on; :attr:`code` is its
    short form for people. A withheld caller gets a random digest that links to
    nothing, because two women who both hide their number are not the same woman.
    """

    kid: str
    digest: str
    purpose: Purpose
    withheld: bool = False

    @property
    def code(self) -> str:
        """``T-`` (caller), ``H-`` (harasser) or ``W-`` (withheld) + 8 Crockford characters.

        40 bits: unique enough to tell callers apart on a screen, not to link records.
        """
        prefix = _WITHHELD_PREFIX if self.withheld else self.purpose.token_prefix
        return f"{prefix}-{_crockford(bytes.fromhex(self.digest)[:5], _SHORT_CODE_CHARS)}"

    def __str__(self) -> str:
        return self.code


# --------------------------------------------------------------------------- sealing


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise SealBroken("sealed number is not in the v1 format")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SealBroken("sealed number is not in the v1 format") from None
    # One sealed value, one spelling: refuse non-canonical trailing bits.
    if _b64url(data) != text:
        raise SealBroken("sealed number is not in the v1 format")
    return data


@dataclass(frozen=True, slots=True)
class SealedNumber:
    """A number encrypted under one vault key; safe to store, log and send around.

    Stored as :meth:`encode`'s compact text ``v1.<kid>.<nonce>.<ciphertext>``
    (base64url, no padding). The purpose is not in the text: whoever opens it must
    say what she expects it to be, and a wrong guess fails.
    """

    kid: str
    nonce: bytes
    ciphertext: bytes

    def encode(self) -> str:
        return f"{_SEAL_VERSION}.{self.kid}.{_b64url(self.nonce)}.{_b64url(self.ciphertext)}"

    @classmethod
    def decode(cls, text: str) -> SealedNumber:
        parts = text.split(".")
        if len(parts) != 4 or parts[0] != _SEAL_VERSION:
            raise SealBroken("sealed number is not in the v1 format")
        _, kid, nonce_text, ciphertext_text = parts
        if not _KID.fullmatch(kid):
            raise SealBroken("sealed number has a malformed key id")
        nonce, ciphertext = _unb64url(nonce_text), _unb64url(ciphertext_text)
        if len(nonce) != _NONCE_BYTES:
            raise SealBroken("sealed number has a malformed nonce")
        body = len(ciphertext) - _TAG_BYTES
        if body < _PAD_BLOCK or body % _PAD_BLOCK:
            raise SealBroken("sealed number has a malformed ciphertext")
        return cls(kid, nonce, ciphertext)

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"SealedNumber(kid={self.kid!r}, {len(self.ciphertext)} bytes)"


def _associated_data(purpose: Purpose, kid: str) -> bytes:
    return b"callcenter/vault/v1\x00" + purpose.value.encode() + b"\x00" + kid.encode()


def _pad(e164: str) -> bytes:
    data = e164.encode("ascii")
    blocks = max(1, -(-len(data) // _PAD_BLOCK))
    return data.ljust(blocks * _PAD_BLOCK, b"\x00")


# --------------------------------------------------------------------------- keys


def generate_key() -> str:
    """A new random master key, base64 (standard alphabet), for a keyring entry."""
    return base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")


def _hkdf(master: bytes, info: bytes) -> bytes:
    # No salt: the master is already 32 uniformly random bytes (RFC 5869, 3.1).
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


@dataclass(frozen=True, slots=True, repr=False)
class VaultKey:
    """One key id's derived keys. Built from a master with :meth:`from_master`."""

    kid: str
    seal_key: bytes
    token_key: bytes
    aead: AESGCM = field(compare=False)

    @classmethod
    def from_master(cls, kid: str, master: bytes) -> VaultKey:
        _check_kid(kid)
        if len(master) != MASTER_KEY_BYTES:
            raise KeyringError(
                f"vault key {kid!r} must be {MASTER_KEY_BYTES} bytes, got {len(master)}"
            )
        seal_key = _hkdf(master, _HKDF_SEAL_INFO)
        return cls(kid, seal_key, _hkdf(master, _HKDF_TOKEN_INFO), AESGCM(seal_key))

    def __repr__(self) -> str:
        return f"VaultKey(kid={self.kid!r})"


def _check_kid(kid: str) -> None:
    if not _KID.fullmatch(kid):
        # Not echoed: a malformed kid is often a key pasted into the wrong place.
        raise KeyringError("a vault key id is 1-32 characters of letters, digits, '_' or '-'")


def _decode_master(kid: str, text: object) -> bytes:
    if not isinstance(text, str):
        raise KeyringError(f"vault key {kid!r} must be a base64 string")
    # Accept the URL-safe alphabet too: keys get pasted from wherever they were made.
    standard = text.strip().replace("-", "+").replace("_", "/")
    if "=" not in standard:
        standard += "=" * (-len(standard) % 4)  # URL-safe keys often come unpadded
    try:
        master = base64.b64decode(standard.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        # The message names the kid, never the key material.
        raise KeyringError(f"vault key {kid!r} is not valid base64") from None
    if len(master) != MASTER_KEY_BYTES:
        raise KeyringError(
            f"vault key {kid!r} must decode to {MASTER_KEY_BYTES} bytes, got {len(master)}"
        )
    return master


class Keyring:
    """The vault's keys by id, and which one is active for new seals and tokens."""

    __slots__ = ("_keys", "_active")

    def __init__(self, keys: Iterable[VaultKey], active_kid: str) -> None:
        by_kid: dict[str, VaultKey] = {}
        for key in keys:
            if key.kid in by_kid:
                raise KeyringError(f"vault key id {key.kid!r} appears twice")
            by_kid[key.kid] = key
        if not by_kid:
            raise KeyringError("the vault keyring is empty")
        if active_kid not in by_kid:
            raise KeyringError(f"the active vault key id {active_kid!r} is not in the keyring")
        self._keys = by_kid
        self._active = by_kid[active_kid]

    @classmethod
    def from_masters(cls, masters: Mapping[str, str], active_kid: str | None) -> Keyring:
        """From ``{kid: base64 master}``; ``active_kid`` may be omitted with one key only."""
        if active_kid is None:
            if len(masters) != 1:
                raise KeyringError(
                    f"several vault keys are configured: set {ENV_ACTIVE_KID} "
                    "(or active_kid in the key file) to the one to use"
                )
            (active_kid,) = masters
        _check_kid(active_kid)
        for kid in masters:
            _check_kid(kid)
        keys = [VaultKey.from_master(kid, _decode_master(kid, m)) for kid, m in masters.items()]
        return cls(keys, active_kid)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        """From ``CALLCENTER_VAULT_KEYS`` and ``CALLCENTER_VAULT_ACTIVE_KID``.

        The keys are a JSON object ``{"kid": "base64"}`` or ``kid:base64,kid:base64``.
        """
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEYS, "").strip()
        if not text:
            raise KeyringError(f"{ENV_KEYS} is not set")
        masters: dict[str, str] = {}
        if text.startswith("{"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                # The decoder's message quotes the text, which holds the keys.
                raise KeyringError(f"{ENV_KEYS} is not valid JSON") from None
            masters = _masters_from_table(loaded, ENV_KEYS)
        else:
            for item in text.split(","):
                kid, sep, master = item.strip().partition(":")
                if not sep:
                    raise KeyringError(f"{ENV_KEYS} entries are kid:base64, separated by commas")
                if kid in masters:
                    raise KeyringError(f"vault key id {kid!r} appears twice")
                masters[kid] = master
        active = env.get(ENV_ACTIVE_KID, "").strip() or None
        return cls.from_masters(masters, active)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """From a JSON or TOML key file that only its owner can read, outside any git repo.

        ``{"active_kid": "k2026", "keys": {"k2026": "base64..."}}`` or the same in
        TOML (``active_kid = "k2026"`` and a ``[keys]`` table).
        """
        real = Path(path).resolve()
        shown = str(real)
        repository = _enclosing_repository(real)
        if repository is not None:
            raise KeyringError(
                f"the vault key file {shown!r} is inside the git repository "
                f"{str(repository)!r}; keep keys out of any repository"
            )
        try:
            info = real.stat()
        except OSError as exc:
            raise KeyringError(f"cannot read vault key file {shown!r}: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise KeyringError(f"the vault key file {shown!r} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyringError(
                f"the vault key file {shown!r} is readable or writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):o}); run: chmod 600 {shown!r}"
            )
        try:
            raw = real.read_bytes()
        except OSError as exc:
            raise KeyringError(f"cannot read vault key file {shown!r}: {exc.strerror}") from None
        try:
            if real.suffix == ".toml":
                loaded: Any = tomllib.loads(raw.decode("utf-8"))
            else:
                loaded = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            # Both decoders quote the offending text, which may be a key.
            raise KeyringError(f"the vault key file {shown!r} cannot be parsed") from None
        if not isinstance(loaded, dict):
            raise KeyringError(f"the vault key file {shown!r} must hold a table")
        active = loaded.get("active_kid")
        if active is not None and not isinstance(active, str):
            raise KeyringError("active_kid in the vault key file must be a string")
        return cls.from_masters(_masters_from_table(loaded.get("keys"), shown), active)

    @property
    def active(self) -> VaultKey:
        return self._active

    @property
    def kids(self) -> tuple[str, ...]:
        """Every key id, the active one first."""
        return (self._active.kid, *(k for k in self._keys if k != self._active.kid))

    def get(self, kid: str) -> VaultKey:
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownKeyId(kid) from None

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __repr__(self) -> str:
        return f"Keyring(active={self._active.kid!r}, kids={self.kids!r})"


def _masters_from_table(table: object, where: str) -> dict[str, str]:
    if not isinstance(table, dict) or not table:
        raise KeyringError(f"{where}: expected a non-empty table of key id -> base64 key")
    return {str(kid): master for kid, master in table.items()}


def _enclosing_repository(path: Path) -> Path | None:
    for directory in path.parents:
        if (directory / ".git").exists():
            return directory
    return None


def load_keyring(environ: Mapping[str, str] | None = None) -> Keyring:
    """The keyring the service runs with: ``CALLCENTER_VAULT_KEY_FILE`` or the env keys.

    Setting both is refused: two sources for the same secret drift apart.
    """
    env = os.environ if environ is None else environ
    key_file = env.get(ENV_KEY_FILE, "").strip()
    if key_file and env.get(ENV_KEYS, "").strip():
        raise KeyringError(f"set either {ENV_KEY_FILE} or {ENV_KEYS}, not both")
    if key_file:
        return Keyring.from_file(key_file)
    if not env.get(ENV_KEYS, "").strip():
        raise KeyringError(
            f"no vault keys: set {ENV_KEY_FILE} to a key file or {ENV_KEYS} "
            "(create a key with callcenter.cases.vault.generate_key())"
        )
    return Keyring.from_env(env)


# --------------------------------------------------------------------------- vault


@dataclass(frozen=True, slots=True)
class VaultEntry:
    """What the vault hands back for a number: its token, and the sealed number.

    ``sealed`` is None for a withheld caller: there is nothing to call back.
    """

    token: CallerToken
    sealed: SealedNumber | None
    reason: Literal["number", "withheld", "unusable"] = "number"
    #: Her token's digests under the keyring's other keys: during a key rotation the row
    #: that knows her may still carry one of these, and must be found, not duplicated.
    aliases: tuple[str, ...] = ()

    @property
    def withheld(self) -> bool:
        return self.sealed is None


class Vault:
    """Tokens, sealing and opening of phone numbers under a :class:`Keyring`."""

    __slots__ = ("_keyring", "_region")

    def __init__(self, keyring: Keyring, *, region: str = DEFAULT_REGION) -> None:
        self._keyring = keyring
        self._region = region

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def active_kid(self) -> str:
        return self._keyring.active.kid

    def normalise(self, raw: str | SecretNumber | None) -> SecretNumber:
        """:func:`normalise_number` in this vault's default region."""
        if isinstance(raw, SecretNumber):
            return raw
        return normalise_number(raw, self._region)

    # -- tokens

    def token_for(
        self,
        number: str | SecretNumber,
        purpose: Purpose = Purpose.CALLER,
        *,
        kid: str | None = None,
    ) -> CallerToken:
        """The token under the active key (or ``kid``); same number, same token."""
        key = self._keyring.active if kid is None else self._keyring.get(kid)
        e164 = self.normalise(number).e164
        message = b"callcenter/token/v1\x00" + purpose.value.encode() + b"\x00" + e164.encode()
        digest = hmac.new(key.token_key, message, hashlib.sha256).hexdigest()
        return CallerToken(key.kid, digest, purpose)

    def tokens_for(
        self, number: str | SecretNumber, purpose: Purpose = Purpose.CALLER
    ) -> tuple[CallerToken, ...]:
        """Her token under every known key, active first: finds her during a rotation."""
        secret = self.normalise(number)
        return tuple(self.token_for(secret, purpose, kid=kid) for kid in self._keyring.kids)

    def token_for_withheld(self) -> CallerToken:
        """A fresh token for a caller who hid her number; it links to no one else."""
        return CallerToken("", secrets.token_hex(32), Purpose.CALLER, withheld=True)

    def retoken(self, sealed: SealedNumber | str, purpose: Purpose) -> CallerToken:
        """The token of a stored number under the active key (for key rotation)."""
        return self.token_for(self.open(sealed, purpose), purpose)

    # -- sealing

    def seal(self, number: str | SecretNumber, purpose: Purpose) -> SealedNumber:
        """Encrypt under the active key with a fresh random nonce."""
        key = self._keyring.active
        e164 = self.normalise(number).e164
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = key.aead.encrypt(nonce, _pad(e164), _associated_data(purpose, key.kid))
        return SealedNumber(key.kid, nonce, ciphertext)

    def open(self, sealed: SealedNumber | str, purpose: Purpose) -> SecretNumber:
        """Decrypt a sealed number stored for ``purpose``.

        Raises :class:`UnknownKeyId` if its key is not in the keyring, and
        :class:`SealBroken` if it was altered, is malformed, or was sealed for
        another purpose.
        """
        if isinstance(sealed, str):
            sealed = SealedNumber.decode(sealed)
        key = self._keyring.get(sealed.kid)
        try:
            padded = key.aead.decrypt(
                sealed.nonce, sealed.ciphertext, _associated_data(purpose, sealed.kid)
            )
        except InvalidTag:
            raise SealBroken(
                f"the sealed number does not open as a {purpose.value} number: "
                "it was altered or sealed for another purpose"
            ) from None
        try:
            return SecretNumber(padded.rstrip(b"\x00").decode("ascii"))
        except (UnicodeDecodeError, InvalidNumber):
            raise SealBroken("the sealed value is not a phone number") from None

    def reseal(self, sealed: SealedNumber | str, purpose: Purpose) -> SealedNumber:
        """Re-encrypt a stored number under the active key (for key rotation)."""
        return self.seal(self.open(sealed, purpose), purpose)

    # -- the IVR's and the console's entry points

    def admit(self, raw: str | SecretNumber, purpose: Purpose) -> VaultEntry:
        """Token and seal a number given by a person (e.g. a harasser's number).

        Strict: raises :class:`InvalidNumber` so the agent can correct her typing.
        """
        number = self.normalise(raw)
        token = self.token_for(number, purpose)
        aliases = tuple(
            t.digest for t in self.tokens_for(number, purpose) if t.digest != token.digest
        )
        return VaultEntry(token, self.seal(number, purpose), aliases=aliases)

    def admit_caller_id(self, caller_id: str | None) -> VaultEntry:
        """Token and seal a caller's CLI as the PBX reports it. Never raises for bad input.

        A hidden number, or one that is not a valid number, gives a withheld entry:
        her call goes on, only without a callback. ``reason`` tells which, for metrics.
        """
        try:
            return self.admit(self.normalise(caller_id), Purpose.CALLER)
        except WithheldNumber:
            return VaultEntry(self.token_for_withheld(), None, "withheld")
        except InvalidNumber:
            return VaultEntry(self.token_for_withheld(), None, "unusable")

    def mask(self, number: str | SecretNumber) -> str:
        """``******10``: for a consent-reveal screen only; prefer the token everywhere."""
        return mask_number(self.normalise(number))

    def __repr__(self) -> str:
        return f"Vault(region={self._region!r}, keyring={self._keyring!r})"
