"""Settings fragments. Each service composes one settings class from these.

Environment variables nest with `__` (e.g. `DATABASE__URL`). Secrets have no defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr
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
