"""The log-miner: mines run logs and feedback into datasets and asks for training."""

SERVICE = "log-miner"  # name in contracts.topology.SERVICES: queue prefix, metrics, logs
SCHEMA = "log_miner"  # its Postgres schema
