"""The exporter: merges, converts and quantizes promoted models and deploys them."""

SERVICE = "exporter"  # name in contracts.topology.SERVICES: queue prefix, metrics, logs
SCHEMA = "exporter"  # its Postgres schema
