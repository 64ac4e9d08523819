"""The use-case objects one gateway app runs with (built by `bootstrap`, read by `api/deps`)."""

from __future__ import annotations

from dataclasses import dataclass

from .metrics import Metrics
from .service.access import AccessControl
from .service.api_keys import ApiKeyService
from .service.completions import CompletionService
from .service.models import ModelService
from .service.ops import OpsService
from .service.runs import RunService
from .service.tokens import TokenService


@dataclass(frozen=True)
class Container:
    access: AccessControl
    tokens: TokenService
    api_keys: ApiKeyService
    runs: RunService
    ops: OpsService
    models: ModelService
    completions: CompletionService
    metrics: Metrics
    max_body_bytes: int
