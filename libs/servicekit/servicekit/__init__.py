"""Runtime kit shared by every Agent Loop service: settings, messaging, DB, S3, logs, metrics, health."""
