"""Who may do what: verify the bearer token, check the role, audit refusals on privileged routes."""

from __future__ import annotations

from ..domain import AuditEntry, AuthenticationError, Identity, PermissionDeniedError, Role
from ..ports import AuditLog
from .api_keys import PREFIX, ApiKeyService
from .tokens import TokenService


class AccessControl:
    def __init__(self, tokens: TokenService, audit: AuditLog, api_keys: ApiKeyService | None = None) -> None:
        self.tokens = tokens
        self.audit = audit
        self.api_keys = api_keys

    async def require(
        self, authorization: str | None, role: Role, *, action: str | None = None, client_ip: str | None = None,
        api_keys: bool = False,
    ) -> Identity:
        """The caller's identity if its token is valid and its role at least `role`.

        `action` marks a privileged route: a refusal there is written to the audit log. With
        `api_keys` (the OpenAI-compatible routes) the bearer credential may also be an API key.
        """
        try:
            who = await self._authenticate(authorization, client_ip, api_keys)
        except AuthenticationError as exc:
            if action is not None:
                await self.audit.record(
                    AuditEntry(subject="anonymous", role="none", action=action, outcome="unauthenticated",
                               client_ip=client_ip, details={"reason": exc.reason})
                )
            raise
        if not who.allows(role):
            if action is not None:
                await self.audit.record(
                    AuditEntry(subject=who.subject, role=who.role.label, action=action, outcome="denied",
                               client_ip=client_ip, details={"required_role": role.label})
                )
            raise PermissionDeniedError(role, who.role)
        return who

    async def _authenticate(self, authorization: str | None, client_ip: str | None, api_keys: bool) -> Identity:
        if api_keys and self.api_keys is not None and authorization:
            scheme, _, credential = authorization.partition(" ")
            credential = credential.strip()
            if scheme.lower() == "bearer" and credential.startswith(f"{PREFIX}_"):
                return await self.api_keys.identify(credential, client_ip)
        return self.tokens.authenticate(authorization)

    def identify(self, token: str | None, role: Role = Role.USER) -> Identity:
        """For a WebSocket handshake: a raw token (no `Bearer ` prefix), no audit."""
        who = self.tokens.verify(token) if token else self.tokens.authenticate(None)
        if not who.allows(role):
            raise PermissionDeniedError(role, who.role)
        return who
