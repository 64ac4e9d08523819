"""Evaluation kit: the BFCL-style AST checker, suite files, and scoring of a GGUF model on them."""
