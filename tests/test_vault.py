"""The caller identity vault: tokens, sealing, keyrings, and never a number in clear.

The numbers below are made up; no assertion message prints one.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter.cases.errors import (
    InvalidNumber,
    KeyringError,
    SealBroken,
    UnknownKeyId,
    VaultError,
    WithheldNumber,
)
from callcenter.cases.vault import (
    ENV_ACTIVE_KID,
    ENV_KEY_FILE,
    ENV_KEYS,
    CallerToken,
    Keyring,
    Purpose,
    SealedNumber,
    Vault,
    generate_key,
    load_keyring,
    normalise_number,
)

NUMBER = "+919876543210"
NATIONAL = "9876543210"
KAT_MASTER = base64.b64encode(bytes(range(32))).decode()
CODE = re.compile(r"[THW]-[0-9A-HJKMNP-TV-Z]{8}")


def vault_with(*kids: str, active: str | None = None) -> Vault:
    masters = {kid: generate_key() for kid in kids}
    return Vault(Keyring.from_masters(masters, active or kids[0]))


@pytest.fixture(scope="module")
def vault() -> Vault:
    return vault_with("k1")


mobile_numbers = (
    st.tuples(st.sampled_from("6789"), st.text("0123456789", min_size=9, max_size=9))
    .map("".join)
    .filter(lambda n: phonenumbers.is_valid_number(phonenumbers.parse(n, "IN")))
)


@st.composite
def written_forms(draw: st.DrawFn, national: str) -> str:
    """One way a carrier, an agent or a form might write the same Indian mobile."""
    prefix = draw(st.sampled_from(["", "0", "+91", "+91 ", "+91-", "91", "0091", "+ 91 "]))
    seps = draw(st.lists(st.sampled_from(["", "", " ", "-"]), min_size=10, max_size=10))
    body = "".join(d + s for d, s in zip(national, seps, strict=True)).rstrip(" -")
    return draw(st.sampled_from(["", " "])) + prefix + body


def assert_no_number(text: str, national: str = NATIONAL) -> None:
    # The national significant number is what identifies her; any 3+ digit run of it leaks.
    assert national not in re.sub(r"\D", "", text), "a number leaked"
    assert national[-4:] not in text, "a number leaked"


# --------------------------------------------------------------------------- normalising


@pytest.mark.parametrize(
    "written",
    ["+91 98765 43210", "09876543210", "9876543210", "+919876543210", "919876543210",
     "0091 98765 43210", "98765-43210", "+91-98765-43210", " (0) 98765 43210 "],
)  # fmt: skip
def test_every_usual_spelling_normalises_to_e164(written: str) -> None:
    assert normalise_number(written).e164 == NUMBER


@pytest.mark.parametrize("marker", ["<unknown>", "anonymous", "", "  ", "Restricted", None])
def test_withheld_markers_are_recognised(marker: str | None) -> None:
    with pytest.raises(WithheldNumber):
        normalise_number(marker)


@pytest.mark.parametrize(
    "junk",
    [
        "12",  # too short
        "1090",  # a service number, not a caller
        "98765 4321",  # one digit short of a mobile
        "0919876543210",  # a stray 0 in front of the country code
        "T-4821",  # a token that came back in a later event, not a vanity number
        "+91 98765 4321O",  # a letter O
        "9" * 80,
        "sip:9876543210@carrier",
    ],
)
def test_unusable_caller_ids_are_refused_without_echoing_them(junk: str) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalise_number(junk)
    assert not isinstance(caught.value, WithheldNumber)
    assert not re.search(r"\d{3}", str(caught.value))
    # Nothing chained: the parser's exception would carry the input into tracebacks.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@given(st.text(max_size=40))
def test_any_text_either_normalises_or_raises_invalid_number(text: str) -> None:
    try:
        number = normalise_number(text)
    except InvalidNumber as exc:
        digits = re.sub(r"\D", "", text)
        if len(digits) >= 3:
            assert digits not in str(exc)
    else:
        assert re.fullmatch(r"\+[1-9]\d{5,15}", number.e164)


def test_a_secret_number_never_shows_its_digits(caplog: pytest.LogCaptureFixture) -> None:
    number = normalise_number(NATIONAL)
    with caplog.at_level(logging.INFO):
        logging.getLogger("callcenter.test").info("caller %s %r %s", number, number, [number])
    assert "caller" in caplog.text
    for shown in (repr(number), str(number), f"{number}", repr({"caller": number}), caplog.text):
        assert_no_number(shown)
    assert number.masked == "******10"
    assert copy.deepcopy({"n": number})["n"] == number
    with pytest.raises(TypeError):
        pickle.dumps(number)
    with pytest.raises(TypeError):
        json.dumps({"caller": number})


# --------------------------------------------------------------------------- tokens


@settings(max_examples=60)
@given(st.data(), mobile_numbers)
def test_token_is_the_same_for_every_spelling(data: st.DataObject, national: str) -> None:
    vault = vault_with("k1")
    first, second = data.draw(written_forms(national)), data.draw(written_forms(national))
    a, b = vault.token_for(first), vault.token_for(second)
    assert a == b
    assert a.code == b.code and CODE.fullmatch(a.code) and a.code.startswith("T-")
    assert len(a.digest) == 64


@settings(max_examples=30)
@given(mobile_numbers)
def test_tokens_differ_across_keys_and_purposes(national: str) -> None:
    one, two = vault_with("k1"), vault_with("k1")  # same kid, different secrets
    assert one.token_for(national).digest != two.token_for(national).digest
    caller = one.token_for(national, Purpose.CALLER)
    harasser = one.token_for(national, Purpose.HARASSER)
    # A woman's number reported as a harasser's elsewhere is not linked by accident.
    assert caller.digest != harasser.digest
    assert harasser.code.startswith("H-")


def test_different_numbers_get_different_tokens(vault: Vault) -> None:
    assert vault.token_for("9876543210") != vault.token_for("9876543201")


def test_token_derivation_is_pinned() -> None:
    """Stored tokens must stay linkable across releases: the scheme is frozen.

    Recomputed here from RFC 5869 with the standard library, so the docstring's
    description is enough to reimplement it elsewhere.
    """
    master = bytes(range(32))
    prk = hmac.new(b"\x00" * 32, master, hashlib.sha256).digest()
    token_key = hmac.new(prk, b"callcenter/vault/v1/token-hmac-sha256\x01", hashlib.sha256).digest()
    expected = hmac.new(
        token_key, b"callcenter/token/v1\x00caller\x00" + NUMBER.encode(), hashlib.sha256
    ).hexdigest()
    token = Vault(Keyring.from_masters({"kat": KAT_MASTER}, None)).token_for(NATIONAL)
    assert token.digest == expected
    assert token.digest == "1241f6f363de55a466313dee99ea00817284436b66394f8ae803aa89d7210907"
    assert token.code == "T-290ZDWV3"


def test_short_code_uses_crockford_base32_of_the_digest() -> None:
    token = CallerToken("k", "ff" * 5 + "00" * 27, Purpose.CALLER)
    assert token.code == "T-ZZZZZZZZ"
    token = CallerToken("k", "00" * 32, Purpose.HARASSER)
    assert str(token) == "H-00000000"


# --------------------------------------------------------------------------- sealing


@settings(max_examples=60)
@given(st.data(), mobile_numbers, st.sampled_from(Purpose))
def test_open_of_seal_gives_the_number_back(
    data: st.DataObject, national: str, purpose: Purpose
) -> None:
    vault = vault_with("k1")
    written = data.draw(written_forms(national))
    sealed = vault.seal(written, purpose)
    assert vault.open(sealed, purpose).e164 == "+91" + national
    assert vault.open(sealed.encode(), purpose).e164 == "+91" + national
    assert SealedNumber.decode(sealed.encode()) == sealed
    assert_no_number(sealed.encode() + repr(sealed), national)


def test_each_seal_uses_a_fresh_nonce_and_hides_the_length(vault: Vault) -> None:
    a, b = vault.seal(NUMBER, Purpose.CALLER), vault.seal(NUMBER, Purpose.CALLER)
    assert a.nonce != b.nonce and a.ciphertext != b.ciphertext
    uk = vault.seal("+44 20 7946 0000", Purpose.CALLER)  # 13 characters against 13 + 1
    assert len(uk.ciphertext) == len(a.ciphertext)


def test_stored_seals_stay_openable() -> None:
    """A seal written by an earlier release (format v1) must open forever."""
    vault = Vault(Keyring.from_masters({"kat": KAT_MASTER}, None))
    stored = "v1.kat.IhQSdWzXSb9Cpz0T.i_CbXzAzLHqgS68xycd-w235Ba_JA6xFGJh0I9n4gaI"
    assert vault.open(stored, Purpose.CALLER).e164 == NUMBER


@settings(max_examples=60)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7), st.booleans())
def test_any_flipped_bit_breaks_the_seal(position: int, bit: int, in_nonce: bool) -> None:
    vault = vault_with("k1")
    sealed = vault.seal(NUMBER, Purpose.CALLER)
    target = bytearray(sealed.nonce if in_nonce else sealed.ciphertext)
    target[position % len(target)] ^= 1 << bit
    if in_nonce:
        tampered = SealedNumber(sealed.kid, bytes(target), sealed.ciphertext)
    else:
        tampered = SealedNumber(sealed.kid, sealed.nonce, bytes(target))
    with pytest.raises(SealBroken):
        vault.open(tampered.encode(), Purpose.CALLER)


def test_a_harasser_number_does_not_open_as_a_caller_number(vault: Vault) -> None:
    sealed = vault.seal(NUMBER, Purpose.HARASSER)
    with pytest.raises(SealBroken) as caught:
        vault.open(sealed, Purpose.CALLER)
    assert_no_number(str(caught.value))
    assert vault.open(sealed, Purpose.HARASSER).e164 == NUMBER


def test_unknown_and_swapped_key_ids_fail() -> None:
    vault = vault_with("k1", "k2")
    sealed = vault.seal(NUMBER, Purpose.CALLER)
    with pytest.raises(UnknownKeyId) as caught:
        vault_with("other").open(sealed, Purpose.CALLER)
    assert caught.value.kid == "k1"
    # Relabelled to another key the vault holds: the key id is bound in, so it fails.
    relabelled = SealedNumber("k2", sealed.nonce, sealed.ciphertext)
    with pytest.raises(SealBroken):
        vault.open(relabelled, Purpose.CALLER)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "v2.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # short nonce
        "v1.k1.AAAAAAAAAAAAAAAA.AAAA",  # no room for number and tag
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
        "v1.k 1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        # The last character carries 2 spare bits; set, they make a second spelling.
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
        "v1.k1.x.y.z",
    ],
)
def test_malformed_sealed_strings_are_refused(text: str) -> None:
    with pytest.raises(SealBroken):
        SealedNumber.decode(text)


@given(st.text(max_size=120))
def test_any_string_opens_or_fails_with_a_vault_error(text: str) -> None:
    vault = vault_with("k1")
    with pytest.raises(VaultError):
        vault.open(text, Purpose.CALLER)


# --------------------------------------------------------------------------- rotation


def test_rotation_reseals_and_retokens_under_the_new_key() -> None:
    old_master, new_master = generate_key(), generate_key()
    before = Vault(Keyring.from_masters({"2025": old_master}, None))
    sealed = before.seal(NUMBER, Purpose.CALLER)
    old_token = before.token_for(NUMBER)

    during = Vault(Keyring.from_masters({"2025": old_master, "2026": new_master}, "2026"))
    assert during.open(sealed, Purpose.CALLER).e164 == NUMBER
    assert during.token_for(NUMBER).kid == "2026"
    new_token, still_old = during.tokens_for("09876543210")
    assert still_old == old_token and new_token.kid == "2026"
    resealed = during.reseal(sealed, Purpose.CALLER)
    assert resealed.kid == "2026"
    assert during.retoken(sealed, Purpose.CALLER) == new_token

    after = Vault(Keyring.from_masters({"2026": new_master}, None))
    assert after.open(resealed, Purpose.CALLER).e164 == NUMBER
    with pytest.raises(UnknownKeyId):
        after.open(sealed, Purpose.CALLER)


# --------------------------------------------------------------------------- entry points


def test_admit_caller_id_handles_hidden_and_unusable_numbers(vault: Vault) -> None:
    known = vault.admit_caller_id("+91 98765 43210")
    assert known.reason == "number" and not known.withheld
    assert known.token == vault.token_for(NUMBER)
    assert known.sealed is not None
    assert vault.open(known.sealed, Purpose.CALLER).e164 == NUMBER

    hidden_a, hidden_b = vault.admit_caller_id("<unknown>"), vault.admit_caller_id(None)
    assert hidden_a.withheld and hidden_a.reason == "withheld" and hidden_a.sealed is None
    assert hidden_a.token.code.startswith("W-") and CODE.fullmatch(hidden_a.token.code)
    # Two women who both hide their number must not share a case history.
    assert hidden_a.token.digest != hidden_b.token.digest

    assert vault.admit_caller_id("1090").reason == "unusable"
    assert_no_number(repr(known) + repr(vault))


def test_admit_is_strict_for_numbers_typed_by_agents(vault: Vault) -> None:
    entry = vault.admit("98765-43210", Purpose.HARASSER)
    assert entry.token.code.startswith("H-")
    assert entry.sealed is not None
    assert vault.open(entry.sealed, Purpose.HARASSER).e164 == NUMBER
    with pytest.raises(InvalidNumber):
        vault.admit("98765", Purpose.HARASSER)


def test_mask_keeps_two_digits_at_most(vault: Vault) -> None:
    assert vault.mask("+91 98765 43210") == "******10"


# --------------------------------------------------------------------------- keyrings


def test_env_keys_in_both_syntaxes_give_the_same_vault() -> None:
    k1, k2 = generate_key(), generate_key()
    as_json = {ENV_KEYS: json.dumps({"k1": k1, "k2": k2}), ENV_ACTIVE_KID: "k2"}
    as_pairs = {ENV_KEYS: f"k1:{k1}, k2:{k2}", ENV_ACTIVE_KID: "k2"}
    one, two = Vault(Keyring.from_env(as_json)), Vault(Keyring.from_env(as_pairs))
    assert one.active_kid == two.active_kid == "k2"
    assert one.keyring.kids == ("k2", "k1")
    assert one.token_for(NUMBER) == two.token_for(NUMBER)
    assert two.open(one.seal(NUMBER, Purpose.CALLER), Purpose.CALLER).e164 == NUMBER
    assert Vault(load_keyring(as_pairs)).token_for(NUMBER) == one.token_for(NUMBER)


def test_a_single_env_key_is_active_without_naming_it() -> None:
    keyring = Keyring.from_env({ENV_KEYS: f"only:{generate_key()}"})
    assert keyring.active.kid == "only"


def test_url_safe_base64_keys_are_accepted() -> None:
    raw = bytes([0xFB, 0xFF] * 16)  # encodes with '+' and '/' in the standard alphabet
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    a = Vault(Keyring.from_env({ENV_KEYS: f"k:{standard}"}))
    b = Vault(Keyring.from_env({ENV_KEYS: f"k:{url_safe}"}))
    assert a.token_for(NUMBER) == b.token_for(NUMBER)


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({}, "not set"),
        ({ENV_KEYS: "k1:" + generate_key() + ",k2:" + generate_key()}, ENV_ACTIVE_KID),
        ({ENV_KEYS: "k1:" + generate_key(), ENV_ACTIVE_KID: "k9"}, "not in the keyring"),
        ({ENV_KEYS: "k1:c2VjcmV0LXNob3J0"}, "32 bytes"),
        ({ENV_KEYS: "k1:not*base64*at*all"}, "base64"),
        ({ENV_KEYS: "k1"}, "kid:base64"),
        ({ENV_KEYS: '{"k1": "secretsecret'}, "not valid JSON"),
        ({ENV_KEYS: "k.1:" + generate_key()}, "key id"),
        ({ENV_KEYS: generate_key() + ":k1"}, "key id"),  # the wrong way round
        ({ENV_KEYS: "k1:" + generate_key() + ",k1:" + generate_key()}, "twice"),
    ],
)
def test_bad_env_keys_are_refused_without_echoing_them(environ: dict[str, str], says: str) -> None:
    with pytest.raises(KeyringError, match=re.escape(says)) as caught:
        Keyring.from_env(environ)
    for secret in re.findall(r"[A-Za-z0-9+/=*]{12,}", environ.get(ENV_KEYS, "")):
        assert secret not in str(caught.value)


def write_key_file(path: Path, mode: int = 0o600, *, toml: bool | None = None) -> Path:
    k1, k2 = generate_key(), generate_key()
    if toml if toml is not None else path.suffix == ".toml":
        path.write_text(f'active_kid = "k2"\n\n[keys]\nk1 = "{k1}"\nk2 = "{k2}"\n')
    else:
        path.write_text(json.dumps({"active_kid": "k2", "keys": {"k1": k1, "k2": k2}}))
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("name", ["vault.json", "vault.toml"])
def test_key_file_outside_the_repository_with_owner_only_mode(tmp_path: Path, name: str) -> None:
    path = write_key_file(tmp_path / name)
    keyring = Keyring.from_file(path)
    assert keyring.kids == ("k2", "k1")
    assert Vault(load_keyring({ENV_KEY_FILE: str(path)})).active_kid == "k2"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o666])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_key_file(tmp_path / "vault.json", mode)
    with pytest.raises(KeyringError, match="chmod 600"):
        Keyring.from_file(path)


def test_key_file_inside_a_git_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    (repo / ".git").mkdir(parents=True)
    (repo / "config").mkdir()
    inside = write_key_file(repo / "config" / "vault.json")
    with pytest.raises(KeyringError, match="inside the git repository"):
        Keyring.from_file(inside)
    # A link from outside does not make the file any less committed-adjacent.
    link = tmp_path / "outside.json"
    link.symlink_to(inside)
    with pytest.raises(KeyringError, match="inside the git repository"):
        Keyring.from_file(link)


def test_this_repositorys_own_tree_is_refused() -> None:
    here = Path(__file__).resolve()
    with pytest.raises(KeyringError, match="inside the git repository"):
        Keyring.from_file(here)


def test_broken_key_files_are_refused_without_echoing_them(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.from_file(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text('active_kid = "k1"\n[keys]\nk1 = "topsecretkeymaterial\n')
    broken.chmod(0o600)
    with pytest.raises(KeyringError, match="cannot be parsed") as caught:
        Keyring.from_file(broken)
    assert "topsecret" not in str(caught.value)
    no_keys = tmp_path / "empty.json"
    no_keys.write_text('{"active_kid": "k1"}')
    no_keys.chmod(0o600)
    with pytest.raises(KeyringError, match="table of key id"):
        Keyring.from_file(no_keys)
    with pytest.raises(KeyringError, match="not a regular file"):
        Keyring.from_file(tmp_path)


def test_load_keyring_wants_exactly_one_source(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "vault.json")
    with pytest.raises(KeyringError, match="not both"):
        load_keyring({ENV_KEY_FILE: str(path), ENV_KEYS: f"k:{generate_key()}"})
    with pytest.raises(KeyringError, match="generate_key"):
        load_keyring({})


def test_keys_are_derived_apart_and_never_shown() -> None:
    master = generate_key()
    keyring = Keyring.from_masters({"k1": master}, None)
    key = keyring.active
    assert key.seal_key != key.token_key
    assert base64.b64decode(master) not in (key.seal_key, key.token_key)
    for shown in (repr(key), repr(keyring), repr(Vault(keyring))):
        assert master not in shown and key.seal_key.hex() not in shown
    assert len(base64.b64decode(generate_key())) == 32
    assert generate_key() != generate_key()
