"""One module per command group; `main.py` mounts them."""
