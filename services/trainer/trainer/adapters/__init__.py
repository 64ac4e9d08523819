"""Adapters of the trainer: one module per technology."""
