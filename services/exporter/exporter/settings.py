"""Settings of the exporter, composed from the shared fragments."""

from __future__ import annotations

from servicekit.settings import HttpSettings, S3Settings, ServiceSettings


class ExporterSettings(ServiceSettings):
    http: HttpSettings = HttpSettings(port=8105)
    s3: S3Settings  # S3__ACCESS_KEY / S3__SECRET_KEY have no defaults
