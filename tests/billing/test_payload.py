"""Invoice payloads: signed order references that survive key rotation and nothing else."""

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.billing.payload import order_id_of, order_payload
from botter.crypto import Keyring

OLD_KEY = "old-key-" + "o" * 40
NEW_KEY = "new-key-" + "n" * 40
FOREIGN_KEY = "someone-else-" + "f" * 40
MAX_ORDER_ID = 2**63 - 1  # BIGINT

keyring = Keyring([OLD_KEY])
order_ids = st.integers(min_value=0, max_value=MAX_ORDER_ID)


@settings(deadline=None)
@given(order_id=order_ids)
def test_round_trip(order_id: int) -> None:
    assert order_id_of(order_payload(order_id, keyring), keyring) == order_id


@settings(deadline=None)
@given(order_id=order_ids)
def test_payload_fits_telegrams_128_bytes(order_id: int) -> None:
    assert len(order_payload(order_id, keyring).encode()) <= 128


def test_payload_reveals_no_more_than_the_order_id() -> None:
    payload = order_payload(42, keyring)

    reference, _, signature = payload.partition(".")
    assert reference == "o42"
    assert len(signature) == 16
    assert OLD_KEY not in payload


def test_payload_of_another_order_is_refused() -> None:
    _, _, signature = order_payload(41, keyring).partition(".")

    assert order_id_of(f"o42.{signature}", keyring) is None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p: p.replace("o1234", "o1235"), id="id-changed"),
        pytest.param(lambda p: p.replace("o1234", "o01234"), id="id-zero-padded"),
        pytest.param(lambda p: p.replace("o1234", "o12340"), id="id-extended"),
        pytest.param(lambda p: p[:-1] + ("A" if p[-1] != "A" else "B"), id="signature-last-char"),
        pytest.param(
            lambda p: p[:6] + ("A" if p[6] != "A" else "B") + p[7:], id="signature-first"
        ),
        pytest.param(lambda p: p[:-1], id="signature-truncated"),
        pytest.param(lambda p: p + "x", id="signature-extended"),
        pytest.param(lambda p: p.upper(), id="upper-case"),
        pytest.param(lambda p: p.partition(".")[0], id="signature-dropped"),
        pytest.param(lambda p: p.partition(".")[0] + ".", id="signature-empty"),
        pytest.param(lambda p: p + ".extra", id="extra-part"),
        pytest.param(lambda p: " " + p, id="leading-space"),
        pytest.param(lambda p: p.replace("o", "x", 1), id="prefix-changed"),
    ],
)
def test_tampered_payloads_are_refused(tamper: Callable[[str], str]) -> None:
    payload = order_payload(1234, keyring)
    forged = tamper(payload)

    assert forged != payload
    assert order_id_of(forged, keyring) is None


@pytest.mark.parametrize(
    "payload",
    [
        "",
        ".",
        "o",
        "o.",
        "o-1.AAAAAAAAAAAAAAAA",
        "o1.AAAAAAAAAAAAAAAA",
        "o 1.AAAAAAAAAAAAAAAA",
        "o1e3.AAAAAAAAAAAAAAAA",
        "o\uff11\uff12.AAAAAAAAAAAAAAAA",  # fullwidth digits
        "o٣.AAAAAAAAAAAAAAAA",
        "o²." + "A" * 16,
        "o1." + "é" * 16,
        "o1." + "\ud800" * 16,
        "plan:7:user:99",
        '{"order": 1}',
    ],
)
def test_garbage_is_refused_without_raising(payload: str) -> None:
    assert order_id_of(payload, keyring) is None


def test_non_ascii_digits_are_refused_even_when_signed() -> None:
    # int() reads Arabic-Indic digits, so a reference made of them must not be taken at all.
    reference = "o٣"
    assert order_id_of(f"{reference}.{keyring.sign(reference)}", keyring) is None


def test_payload_signed_with_a_foreign_key_is_refused() -> None:
    foreign = order_payload(7, Keyring([FOREIGN_KEY]))

    assert order_id_of(foreign, keyring) is None


def test_rotated_keyring_still_verifies_old_payloads() -> None:
    old_payload = order_payload(7, Keyring([OLD_KEY]))
    rotated = Keyring([NEW_KEY, OLD_KEY])

    assert order_id_of(old_payload, rotated) == 7
    new_payload = order_payload(8, rotated)
    assert order_id_of(new_payload, rotated) == 8
    assert order_id_of(new_payload, Keyring([NEW_KEY])) == 8
    # New payloads are signed with the new key only: the old keyring cannot read them.
    assert order_id_of(new_payload, Keyring([OLD_KEY])) is None


def test_a_retired_key_no_longer_verifies() -> None:
    old_payload = order_payload(7, Keyring([OLD_KEY]))

    assert order_id_of(old_payload, Keyring([NEW_KEY])) is None
