"""The gateway: authenticated REST/WebSocket front door that turns requests into run messages."""

SERVICE = "gateway"  # name in contracts.topology.SERVICES: queue prefix, metrics, logs
SCHEMA = "gateway"  # its Postgres schema
