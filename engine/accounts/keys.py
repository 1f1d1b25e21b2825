"""One server secret, a separate key per use (HKDF-SHA256, RFC 5869): session tokens, image links, studio
cookies and secrets at rest never share a key, so a key that leaks from one use (a studio cookie secret in a
crash dump, say) signs nothing else, and a use can be re-keyed alone."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENCRYPTED_PREFIX = "enc:v1:"


class SecretUnreadable(Exception):
    """A secret at rest that this server's key can't decrypt (the server secret was changed)."""


class ServerKeys:
    def __init__(self, secret: str):
        self._secret = secret.encode()
        self.session_tokens = self.derive("session-tokens").hex()
        self.image_links = self.derive("image-links").hex()
        self.studio_cookies = self.derive("studio-cookies").hex()
        self._fernet = Fernet(base64.urlsafe_b64encode(self.derive("secrets-at-rest")))

    def derive(self, purpose: str, length: int = 32) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"image-studio",
                    info=purpose.encode()).derive(self._secret)

    def encrypt(self, plain: str) -> str:
        return ENCRYPTED_PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, stored: str) -> str:
        """The plain text of an ``encrypt`` result; a value stored before encryption comes back as it is."""
        if not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(ENCRYPTED_PREFIX).encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadable("a stored secret can't be decrypted with this server's secret key") from exc
