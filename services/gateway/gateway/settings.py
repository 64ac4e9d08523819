"""Settings of the gateway, composed from the shared fragments (env vars nest with `__`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from screening.policy import ScreeningSettings
from servicekit.settings import HttpSettings, RedisSettings, S3Settings, ServiceSettings


class AuthSettings(BaseModel):
    """`AUTH__*`: RS256 signing keys and token claims."""

    keys_dir: Path = Field(description="directory of RSA private keys, one `<kid>.pem` per key")
    active_kid: str | None = Field(default=None, description="key that signs; default: the newest file")
    issuer: str = "agentloop-gateway"
    audience: str = "agentloop"
    token_ttl_s: int = Field(default=1800, ge=30, le=86400)
    leeway_s: float = Field(default=5.0, ge=0, le=300, description="clock skew tolerated on exp/iat")
    reload_interval_s: float = Field(default=5.0, gt=0, description="how often the key directory is re-scanned")
    api_key_cache_s: float = Field(default=30.0, ge=0, le=3600, description=(
        "how long an API key sent as the bearer credential (OpenAI-compatible routes) stays verified; "
        "a key revoked on another gateway instance works there until then"))


class LimitSettings(BaseModel):
    """`LIMITS__*`: rate limits in the `limits` notation (`120/minute`, `5/second;100/hour`)."""

    runs: str = Field(default="120/minute", description="run submissions per subject")
    token: str = Field(default="20/minute", description="API-key exchanges per client IP")


class RunSettings(BaseModel):
    """`RUNS__*`: how long a client may block on a run, and what a run may ask for."""

    max_wait_s: float = Field(default=600.0, gt=0, description="upper bound of ?wait=true&timeout=")
    wait_grace_s: float = Field(default=5.0, ge=0, description="added to the run's own timeout_s by default")
    groupthink_max_samples: int = Field(default=8, ge=2, le=64,
                                        description="largest options.groupthink.samples accepted (else 422)")


class GatewaySettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8000)
    redis: RedisSettings = RedisSettings()
    s3: S3Settings  # S3__ACCESS_KEY / S3__SECRET_KEY have no defaults
    auth: AuthSettings  # AUTH__KEYS_DIR has no default
    limits: LimitSettings = LimitSettings()
    runs: RunSettings = RunSettings()
    screening: ScreeningSettings = ScreeningSettings()
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="request bodies and WebSocket messages")
    log_miner_url: str = Field(default="http://127.0.0.1:8102",
                               description="the log-miner's internal HTTP port (GET /v1/ops/label-queue reads it)")
