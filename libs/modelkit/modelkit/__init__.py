"""Model-side conventions shared by runner, trainer and exporter: the chat format and base models."""
