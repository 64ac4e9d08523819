"""Adapters: one module per technology."""
