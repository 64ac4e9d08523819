"""The keyring on disk: a directory of RSA private keys in PEM, one `<kid>.pem` per key.

Rotation is a file operation: drop a new key in (it becomes the signer as the newest file),
keep the old one until the tokens it signed have expired, then delete it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from contracts import new_id

from ..domain import SigningKey

KID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MIN_KEY_BITS = 2048


class KeyFileError(ValueError):
    """A key file that cannot serve as an RS256 signing key."""


class KeyDirectory:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _files(self) -> list[Path]:
        if not self.path.is_dir():
            raise KeyFileError(f"AUTH__KEYS_DIR {self.path} is not a directory")
        return sorted(p for p in self.path.iterdir() if p.suffix == ".pem" and p.is_file())

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Changes whenever a key file is added, removed or rewritten (cheap: stat only)."""
        out = []
        for p in self._files():
            st = p.stat()
            out.append((p.name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def load(self) -> list[SigningKey]:
        return [load_key_file(p) for p in self._files()]


def load_key_file(path: Path) -> SigningKey:
    kid = path.stem
    if not KID_PATTERN.match(kid):
        raise KeyFileError(f"{path.name}: the file name (the kid) may hold only letters, digits, '.', '_', '-'")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFileError(f"{path}: RS256 needs an RSA key, found {type(key).__name__}")
    if key.key_size < MIN_KEY_BITS:
        raise KeyFileError(f"{path}: RSA key of {key.key_size} bits; at least {MIN_KEY_BITS} are required")
    return SigningKey(kid=kid, private_key=key, created=path.stat().st_mtime)


def generate_key_file(directory: Path, kid: str | None = None, *, bits: int = 2048) -> Path:
    """Write a new RSA private key as `<kid>.pem` (mode 0600); returns its path."""
    kid = kid or f"key-{new_id()[:8]}"
    if not KID_PATTERN.match(kid):
        raise KeyFileError(f"invalid kid {kid!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{kid}.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_suffix(".pem.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    tmp.replace(path)  # atomic: a scanning gateway never sees half a key
    return path
