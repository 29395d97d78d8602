"""The keyring: secrets at rest, signatures, and rotation without downtime (P8)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.crypto import CryptoError, Keyring, secret_digest

KEY_A = "key-a-" + "a" * 40
KEY_B = "key-b-" + "b" * 40
KEY_C = "key-c-" + "c" * 40
TOKEN = "7000000001:MpoF5rbSvpU-RHoK0dokvRux3GhRW5U8v6R"


@settings(deadline=None)
@given(plaintext=st.text())
def test_encrypt_decrypt_round_trip(plaintext: str) -> None:
    keyring = Keyring([KEY_A])

    assert keyring.decrypt(keyring.encrypt(plaintext)) == plaintext


def test_ciphertext_hides_the_plaintext_and_is_fresh_each_time() -> None:
    keyring = Keyring([KEY_A])

    first, second = keyring.encrypt(TOKEN), keyring.encrypt(TOKEN)

    assert first != second
    for ciphertext in (first, second):
        assert TOKEN not in ciphertext
        assert TOKEN.split(":")[1] not in ciphertext
        assert KEY_A not in ciphertext


def test_a_foreign_key_cannot_decrypt() -> None:
    ciphertext = Keyring([KEY_A]).encrypt(TOKEN)

    with pytest.raises(CryptoError, match="no key in BOTTER_SECRET_KEYS fits") as caught:
        Keyring([KEY_B]).decrypt(ciphertext)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("ciphertext", ["", "not a token", "gAAAAA", "é"])
def test_garbage_ciphertext_is_a_crypto_error(ciphertext: str) -> None:
    with pytest.raises(CryptoError):
        Keyring([KEY_A]).decrypt(ciphertext)


def test_tampered_ciphertext_is_a_crypto_error() -> None:
    keyring = Keyring([KEY_A])
    ciphertext = keyring.encrypt(TOKEN)
    middle = len(ciphertext) // 2
    tampered = ciphertext[:middle] + ("A" if ciphertext[middle] != "A" else "B")
    tampered += ciphertext[middle + 1 :]

    with pytest.raises(CryptoError):
        keyring.decrypt(tampered)


def test_an_empty_keyring_is_refused() -> None:
    with pytest.raises(CryptoError, match="at least one key"):
        Keyring([])


def test_p8_keys_rotate_without_downtime() -> None:
    old = Keyring([KEY_A])
    written_before = old.encrypt(TOKEN)

    # Step 1: the new key goes first, the old one stays: everything still reads.
    both = Keyring([KEY_B, KEY_A])
    assert both.decrypt(written_before) == TOKEN
    written_during = both.encrypt(TOKEN)
    assert both.decrypt(written_during) == TOKEN
    assert Keyring([KEY_B]).decrypt(written_during) == TOKEN  # new writes use the new key

    # Step 2: re-encrypt what was written before under the newest key.
    rotated = both.rotate(written_before)
    assert rotated != written_before
    assert both.decrypt(rotated) == TOKEN

    # Step 3: the old key is retired; rotated data still reads, unrotated data does not.
    new = Keyring([KEY_B])
    assert new.decrypt(rotated) == TOKEN
    assert new.decrypt(written_during) == TOKEN
    with pytest.raises(CryptoError):
        new.decrypt(written_before)


def test_p8_rotating_data_no_key_fits_is_a_crypto_error() -> None:
    foreign = Keyring([KEY_C]).encrypt(TOKEN)

    with pytest.raises(CryptoError, match="no key in BOTTER_SECRET_KEYS fits"):
        Keyring([KEY_B, KEY_A]).rotate(foreign)


def test_sign_and_verify() -> None:
    keyring = Keyring([KEY_A])
    signature = keyring.sign("o1")

    assert len(signature) == 16
    assert keyring.verify("o1", signature)
    assert not keyring.verify("o2", signature)
    assert keyring.sign("o1") == signature  # deterministic


@pytest.mark.parametrize("length", [16, 22, 43])
def test_longer_signatures_verify(length: int) -> None:
    keyring = Keyring([KEY_A])

    assert keyring.verify("o1", keyring.sign("o1", length))


@pytest.mark.parametrize("length", [0, 1, 8, 15])
def test_signatures_shorter_than_16_are_refused(length: int) -> None:
    keyring = Keyring([KEY_A])

    assert not keyring.verify("o1", keyring.sign("o1", 43)[:length])


@pytest.mark.parametrize("signature", ["é" * 16, "\ud800" * 16, "\x00" * 16, " " * 16])
def test_verify_refuses_odd_signatures_without_raising(signature: str) -> None:
    assert not Keyring([KEY_A]).verify("o1", signature)


def test_signatures_are_per_key_and_every_key_verifies() -> None:
    rotated = Keyring([KEY_B, KEY_A])
    by_old = Keyring([KEY_A]).sign("o1")

    assert rotated.sign("o1") != by_old
    assert rotated.sign("o1") == Keyring([KEY_B]).sign("o1")
    assert rotated.verify("o1", by_old)
    assert not Keyring([KEY_C]).verify("o1", by_old)


def test_secret_digest() -> None:
    assert secret_digest("s") == secret_digest("s")
    assert secret_digest("s") != secret_digest("t")
    assert len(secret_digest("s")) == 32
    assert b"s" * 8 not in secret_digest("s" * 8)
