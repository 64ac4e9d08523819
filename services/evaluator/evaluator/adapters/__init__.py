"""Adapters of the evaluator: Postgres, S3, the model registry, llama.cpp scoring."""
