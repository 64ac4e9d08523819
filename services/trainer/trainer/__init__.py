"""The trainer: trains LoRA adapters on built datasets."""

SERVICE = "trainer"  # name in contracts.topology.SERVICES: queue prefix, metrics, logs
SCHEMA = "trainer"  # its Postgres schema
