"""Invoice payloads: a signed order reference, so a client can neither forge nor alter one.

The payload holds only the order id and an HMAC of it; price, plan and user come from the
order row. 128 bytes is Telegram's limit; these are about 30.
"""

from botter.crypto import Keyring

_PREFIX = "o"


def order_payload(order_id: int, keyring: Keyring) -> str:
    reference = f"{_PREFIX}{order_id}"
    return f"{reference}.{keyring.sign(reference)}"


def order_id_of(payload: str, keyring: Keyring) -> int | None:
    """The order id when the payload is one of ours and intact; None otherwise."""
    reference, _, signature = payload.partition(".")
    number = reference[len(_PREFIX) :]
    # isdigit alone also accepts digits of other scripts, and superscripts int() refuses.
    if not reference.startswith(_PREFIX) or not (number.isascii() and number.isdigit()):
        return None
    if not keyring.verify(reference, signature):
        return None
    return int(number)
