"""`agentloop`: the command line of Agent Loop (API keys, tokens, runs, status)."""
