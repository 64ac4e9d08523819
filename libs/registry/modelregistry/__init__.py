"""The model registry (schema `registry`, decision 0011).

Read API for every service (`list_versions`, `get_version`, `get_aliases`, `resolve`,
`local_gguf_path`); the writer (`modelregistry.write`) is the exporter's alone.
"""

from .errors import (
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
    BUNDLED_URI,
    SERVED_STATUSES,
    STATUSES,
    GateEvaluation,
    ModelFile,
    ModelVersion,
    promotion_refusal,
)
from .read import get_aliases, get_version, list_versions, resolve

__all__ = [
    "ALIASES", "BASE_VERSION", "BUNDLED_URI", "SERVED_STATUSES", "STATUSES", "ChecksumMismatchError", "GateEvaluation",
    "ModelFile",
    "ModelFileError",
    "ModelVersion", "NoPreviousVersionError", "NotPromotableError", "RegistryError", "UnknownVersionError",
    "VersionConflictError", "get_aliases", "get_version", "list_versions", "local_gguf_path", "promotion_refusal",
    "resolve",
    "sha256_of",
]
