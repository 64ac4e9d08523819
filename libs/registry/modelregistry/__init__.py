"""The model registry (schema `registry`, decision 0011).

Read API for every service (`list_versions`, `get_version`, `get_aliases`, `resolve`,
`local_gguf_path`, `running_canary`, `get_canary`); the writer (`modelregistry.write`) is the exporter's alone.
"""

from .errors import (
    CanaryConflictError,
    NoPreviousVersionError,
    NotPromotableError,
    RegistryError,
    UnknownVersionError,
    VersionConflictError,
)
from .files import ChecksumMismatchError, ModelFileError, local_gguf_path, sha256_of
from .model import (
    ALIASES,
    BASE_VERSION,
    CANARY_MODES,
    CANARY_STATUSES,
    Canary,
    BUNDLED_URI,
    SERVED_STATUSES,
    STATUSES,
    GateEvaluation,
    ModelFile,
    ModelVersion,
    canary_bucket,
    canary_refusal,
    promotion_refusal,
)
from .read import get_aliases, get_canary, get_version, list_versions, resolve, running_canary

__all__ = [
    "ALIASES", "BASE_VERSION", "CANARY_MODES", "CANARY_STATUSES", "Canary", "CanaryConflictError", "canary_bucket", "canary_refusal",
    "get_canary", "running_canary", "BUNDLED_URI", "SERVED_STATUSES", "STATUSES", "ChecksumMismatchError", "GateEvaluation",
    "ModelFile",
    "ModelFileError",
    "ModelVersion", "NoPreviousVersionError", "NotPromotableError", "RegistryError", "UnknownVersionError",
    "VersionConflictError", "get_aliases", "get_version", "list_versions", "local_gguf_path", "promotion_refusal",
    "resolve",
    "sha256_of",
]
