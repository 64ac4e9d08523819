"""One module per technology the gateway talks to."""
