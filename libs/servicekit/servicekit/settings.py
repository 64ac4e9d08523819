"""Settings fragments. Each service composes one settings class from these.

Environment variables nest with `__` (e.g. `DATABASE__URL`). Secrets have no defaults.
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerSettings(BaseModel):
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    prefetch: int = Field(default=16, ge=1)
    delivery_limit: int = Field(default=5, ge=1, description="x-delivery-limit of work queues")


class DatabaseSettings(BaseModel):
    url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/agentloop"
    pool_size: int = Field(default=10, ge=1)


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "agentloop"


class S3Settings(BaseModel):
    endpoint: str = "127.0.0.1:8333"
    access_key: SecretStr
    secret_key: SecretStr
    bucket: str = "agentloop"
    secure: bool = False
    region: str = "us-east-1"


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int


class LogSettings(BaseModel):
    level: str = "INFO"
    json_format: bool = True


class LeaseSettings(BaseModel):
    """The fields of a service whose jobs are leased rows (trainer, evaluator, exporter): the job
    section of its settings extends this. `env_prefix` names the section in the error."""

    env_prefix: ClassVar[str] = "JOBS"

    lease_ttl_s: float = Field(default=60.0, gt=0)
    heartbeat_s: float = Field(default=15.0, gt=0)
    poll_interval_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    retry_delay_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _heartbeat_within_ttl(self) -> Self:
        if self.heartbeat_s * 2 > self.lease_ttl_s:
            raise ValueError(
                f"{self.env_prefix}__HEARTBEAT_S ({self.heartbeat_s}) must be at most half of "
                f"{self.env_prefix}__LEASE_TTL_S ({self.lease_ttl_s}), or one late heartbeat loses the lease"
            )
        return self


class ServiceSettings(BaseSettings):
    """Base for a service's settings: env vars, `__` nesting, unknown variables ignored."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    broker: BrokerSettings = BrokerSettings()
    database: DatabaseSettings = DatabaseSettings()
    log: LogSettings = LogSettings()
    instance_id: str | None = None


def load(cls: type[ServiceSettings]) -> ServiceSettings:
    """Build settings, turning a missing secret into one clear start-up error."""
    from pydantic import ValidationError

    try:
        return cls()
    except ValidationError as exc:
        missing = [
            "__".join(str(p).upper() for p in err["loc"]) for err in exc.errors() if err["type"] == "missing"
        ]
        if missing:
            raise SystemExit(f"missing required setting(s): {', '.join(missing)}") from None
        raise
