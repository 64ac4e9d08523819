"""Rules and entities of the gateway, no I/O, by role: who calls (`identities`), what they may send
(`requests`; OpenAI's chat completions in `openai`), what the use cases exchange with their ports
(`records`) and the domain errors (`errors`, mapped to HTTP in `api/errors.py`, the one place that
knows about status codes)."""

from __future__ import annotations

from .identities import (
    Role,
    Identity,
    SigningKey,
)
from .errors import (
    GatewayError,
    ApiKeyNotFoundError,
    AuthenticationError,
    PermissionDeniedError,
    RunNotFoundError,
    RunNotFinishedError,
    RateLimitedError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelCommandConflictError,
    CompletionFailedError,
)
from .requests import (
    StrictRunOptions,
    StrictDatasetOptions,
    StrictLoraOptions,
    RunSubmission,
    RunRules,
    CorrectedToolCall,
    FeedbackSubmission,
    PromoteSubmission,
    RollbackSubmission,
    RetrainSubmission,
    ScreenItem,
    ScreenSubmission,
    ScreenMark,
    ScreenMarkSubmission,
    ApiKeySubmission,
)
from .records import (
    RunStatus,
    RunRecord,
    TaggedRun,
    NewRun,
    RunFinish,
    NewFeedback,
    AuditEntry,
    ApiKeyRecord,
    primary_score,
)
from .openai import (
    ChatCompletionRequest,
    UnsupportedValueError,
    to_run,
)

__all__ = [
    "ApiKeyNotFoundError",
    "ApiKeyRecord",
    "ApiKeySubmission",
    "AuditEntry",
    "AuthenticationError",
    "ChatCompletionRequest",
    "CompletionFailedError",
    "CorrectedToolCall",
    "FeedbackSubmission",
    "GatewayError",
    "Identity",
    "InvalidRequestError",
    "ModelCommandConflictError",
    "ModelNotFoundError",
    "NewFeedback",
    "NewRun",
    "PermissionDeniedError",
    "PromoteSubmission",
    "RateLimitedError",
    "RetrainSubmission",
    "ScreenItem",
    "ScreenSubmission",
    "ScreenMark",
    "ScreenMarkSubmission",
    "Role",
    "RollbackSubmission",
    "RunFinish",
    "RunNotFinishedError",
    "RunNotFoundError",
    "RunRecord",
    "RunRules",
    "RunStatus",
    "RunSubmission",
    "SigningKey",
    "TaggedRun",
    "StrictDatasetOptions",
    "StrictLoraOptions",
    "StrictRunOptions",
    "UnsupportedValueError",
    "primary_score",
    "to_run",
]
