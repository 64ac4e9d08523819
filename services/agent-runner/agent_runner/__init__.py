"""agent-runner: executes agent runs (LLM + tools) requested over RabbitMQ and records every step."""
