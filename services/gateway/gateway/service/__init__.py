"""Use cases of the gateway, over the ports in `gateway.ports`."""
