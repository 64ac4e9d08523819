"""The agent-runner: executes agent runs (LLM + tools) requested over RabbitMQ, streams their
steps to the requester and records every step of every run."""

SERVICE = "agent-runner"  # name in contracts.topology.SERVICES: queue prefix, metrics, logs
SCHEMA = "agent_runner"  # its Postgres schema
