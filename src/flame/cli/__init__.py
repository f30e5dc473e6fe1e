"""The ``flame`` command line."""

from flame.cli._main import main

__all__ = ["main"]
