"""Adapters of the log-miner's ports: Postgres, S3, corpus files."""
