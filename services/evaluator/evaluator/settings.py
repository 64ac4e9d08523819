"""Settings of the evaluator, composed from the shared fragments."""

from __future__ import annotations

from servicekit.settings import HttpSettings, S3Settings, ServiceSettings


class EvaluatorSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8104)
    s3: S3Settings  # S3__ACCESS_KEY / S3__SECRET_KEY have no defaults
