"""Secrets at rest and signed references, from the keyring in BOTTER_SECRET_KEYS.

The first key encrypts and signs; every key decrypts and verifies, so a new key can be
put first while data written under the old ones stays readable (rotation without
downtime). `rotate` re-encrypts a value under the newest key.
"""

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from botter.errors import BotterError


class CryptoError(BotterError):
    pass


def _fernet_key(secret: str) -> bytes:
    digest = hashlib.sha256(b"botter.encrypt:" + secret.encode()).digest()
    return base64.urlsafe_b64encode(digest)


def _signing_key(secret: str) -> bytes:
    return hashlib.sha256(b"botter.sign:" + secret.encode()).digest()


class Keyring:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise CryptoError("the keyring needs at least one key")
        self._fernet = MultiFernet([Fernet(_fernet_key(secret)) for secret in secrets])
        self._signing_keys = [_signing_key(secret) for secret in secrets]

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise CryptoError("cannot decrypt: no key in BOTTER_SECRET_KEYS fits") from None

    def rotate(self, ciphertext: str) -> str:
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise CryptoError("cannot rotate: no key in BOTTER_SECRET_KEYS fits") from None

    def sign(self, message: str, length: int = 16) -> str:
        mac = hmac.new(self._signing_keys[0], message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:length]

    def verify(self, message: str, signature: str) -> bool:
        length = len(signature)
        # compare_digest raises on non-ASCII text, which a forged signature may hold.
        if length < 16 or not signature.isascii():
            return False
        for key in self._signing_keys:
            mac = hmac.new(key, message.encode(), hashlib.sha256).digest()
            expected = base64.urlsafe_b64encode(mac).decode().rstrip("=")[:length]
            if hmac.compare_digest(expected, signature):
                return True
        return False


def secret_digest(secret: str) -> bytes:
    """What the webhook path compares against: a digest, so the secret itself is not cached."""
    return hashlib.sha256(secret.encode()).digest()
