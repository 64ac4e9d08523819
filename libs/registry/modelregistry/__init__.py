"""Model registry: versions, aliases (production, candidate, previous) and lineage. Schema `registry`; the exporter writes, others read (decision 0011)."""
