"""Who is calling: roles, an authenticated identity, a signing key."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may do."""

    USER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, value: object) -> Role:
        """The role named by a claim or a database row; ValueError for anything else."""
        if not isinstance(value, str):
            raise ValueError(f"role must be a string, not {type(value).__name__}")
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(f"unknown role {value!r}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling, from a verified access token."""

    subject: str
    role: Role
    token_id: str = ""
    expires_at: float = 0.0

    def allows(self, required: Role) -> bool:
        return self.role >= required


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One RSA key of the keyring; `created` (epoch seconds) decides which one is newest."""

    kid: str
    private_key: RSAPrivateKey
    created: float
