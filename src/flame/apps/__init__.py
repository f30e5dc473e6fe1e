"""Services that ship with Flame (run them with ``python -m flame.apps.<name>``)."""
