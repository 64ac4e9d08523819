"""The evaluator: scores candidates against production and gates promotion."""

SERVICE = "evaluator"  # name in contracts.topology.SERVICES: queue prefix, metrics, logs
SCHEMA = "evaluator"  # its Postgres schema
